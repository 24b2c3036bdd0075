"""The encoder of each modality: a closed set, fixed by the API.

The proto's `Query` oneof and `CatalogEntry` content name the modalities a caller can send, and
the catalog, the journal and the index generations store them by name; so a new modality is a
change of the contract (proto, an encoder module beside `ids.py`, this table), not a plug-in.
Encoders still meet the core only through `base.Encoder` / `base.ServingEncoder`, which keeps
training, export and serving free of per-modality code.
"""

from __future__ import annotations

from jointspace.core.errors import InvalidInput
from jointspace.encoders.base import EncoderPlugin
from jointspace.encoders.impl import audio, ids, text

PLUGINS: dict[str, EncoderPlugin] = {plugin.name: plugin for plugin in (ids.PLUGIN, text.PLUGIN, audio.PLUGIN)}


def by_name(name: str) -> EncoderPlugin:
    found = PLUGINS.get(name)
    if found is None:
        raise InvalidInput(f"no encoder named {name!r}; known: {', '.join(sorted(PLUGINS))}")
    return found


def for_modality(modality: str) -> EncoderPlugin:
    for plugin in PLUGINS.values():
        if modality in plugin.modalities:
            return plugin
    known = sorted(m for p in PLUGINS.values() for m in p.modalities)
    raise InvalidInput(f"unknown modality {modality!r}; known: {', '.join(known)}")
