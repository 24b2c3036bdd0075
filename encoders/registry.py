"""Encoders keyed by name, open to other packages.

A third-party package adds an encoder (say, for images) by subclassing `Encoder` and
`ServingEncoder` and declaring an entry point in the `jointspace.encoders` group that points at a
`EncoderPlugin`; nothing in jointspace needs editing. Built-in encoders register the same way,
from this module, so there is one lookup path for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from jointspace.errors import InvalidInput
from jointspace.limits import Limits

ENTRY_POINT_GROUP = "jointspace.encoders"


@dataclass(frozen=True)
class EncoderPlugin:
    """How to make the two halves of one encoder. `modalities` are the view / query fields it
    encodes; `load` builds the serving half from an exported SavedModel directory and its
    manifest entry under the server's request limits."""

    name: str
    modalities: tuple[str, ...]
    encoder_class: type
    load: Callable[[Path, dict[str, Any], Limits], Any]


_plugins: dict[str, EncoderPlugin] = {}
_entry_points_loaded = False


def register(plugin: EncoderPlugin) -> None:
    for existing in _plugins.values():
        clash = set(existing.modalities) & set(plugin.modalities)
        if clash and existing.name != plugin.name:
            raise ValueError(
                f"encoder {plugin.name!r} claims modalities {sorted(clash)} of {existing.name!r}"
            )
    _plugins[plugin.name] = plugin


def _load_builtins_and_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from jointspace.encoders import audio, ids, text  # noqa: F401  (they register themselves)

    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        plugin = entry_point.load()
        if not isinstance(plugin, EncoderPlugin):
            raise TypeError(f"entry point {entry_point.name!r} is not an EncoderPlugin")
        register(plugin)


def plugins() -> dict[str, EncoderPlugin]:
    _load_builtins_and_entry_points()
    return dict(_plugins)


def by_name(name: str) -> EncoderPlugin:
    found = plugins().get(name)
    if found is None:
        raise InvalidInput(f"no encoder named {name!r}; installed: {', '.join(sorted(_plugins))}")
    return found


def for_modality(modality: str) -> EncoderPlugin:
    for plugin in plugins().values():
        if modality in plugin.modalities:
            return plugin
    known = sorted(m for p in _plugins.values() for m in p.modalities)
    raise InvalidInput(f"unknown modality {modality!r}; known: {', '.join(known)}")
