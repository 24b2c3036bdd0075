"""A folder of labelled audio files into audio ↔ text pair rows, split into train and test, and a
catalog.

Labels come from a CSV (`path,label[,group]`, paths relative to the folder; a header row naming
the columns is optional and may add more columns) or from the file names: by default the Free
Spoken Digit Dataset's `{digit}_{speaker}_{take}.wav` (the label is the digit's word), or any
regular expression with a named group `label` (other named groups become fields, e.g.
`speaker`). A group field (`--group-by`, by default `group`, else `speaker`) allows a
leave-group-out split: the honest test of whether audio search works for voices it never heard.

Output in DIR: `train.jsonl` / `test.jsonl` with `{"audio": path, "text": label}` rows (paths
relative to the file, as the format wants), and `catalog.jsonl` with every clip (`clip:<path in
the folder without suffix>`, metadata label, fields and split) and every label as text
(`label:<label>`), so that audio → text search has labels to find.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data import fsdd
from jointspace.data.rows import read_text_lines, relative_path, write_rows
from jointspace.data.splits import group_split, random_split

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SPLITS = ("random", "group")
GROUP_FIELDS = ("group", "speaker")


@dataclass(frozen=True)
class LabelledClip:
    path: Path  # resolved
    label: str
    fields: dict[str, str] = field(default_factory=dict)


def clips_from_csv(folder: Path, labels: Path) -> list[LabelledClip]:
    """Clips named in a `path,label[,group]` CSV, with errors naming the CSV line."""
    lines = [(number, [c.strip() for c in next(csv.reader([line]))])
             for number, line in read_text_lines(labels)]
    columns = ["path", "label", "group"]
    if lines[0][1][0].lower() == "path":
        columns = [c.lower() for c in lines.pop(0)[1]]
        if "label" not in columns:
            raise InvalidInput(f"{labels}:1: the header names no 'label' column")
    clips = []
    labelled: dict[Path, int] = {}  # clip → the line that labelled it
    for number, cells in lines:
        where = f"{labels}:{number}"
        if len(cells) < 2 or len(cells) > len(columns):
            raise InvalidInput(f"{where}: expected {','.join(columns)} (path and label required), "
                               f"got {len(cells)} field{'s' if len(cells) != 1 else ''}")
        row = dict(zip(columns, cells))
        if not row.get("path") or not row.get("label"):
            raise InvalidInput(f"{where}: path and label must not be empty")
        path = folder / row["path"]
        if not path.is_file():
            raise NotFound(f"{where}: audio file {row['path']!r} not found in {folder}")
        resolved = path.resolve()
        if resolved in labelled:  # one clip, two rows and two catalog entries of one key
            raise InvalidInput(f"{where}: {row['path']!r} is already labelled at line {labelled[resolved]}")
        labelled[resolved] = number
        fields = {k: v for k, v in row.items() if k not in ("path", "label") and v}
        clips.append(LabelledClip(resolved, row["label"], fields))
    if not clips:
        raise InvalidInput(f"{labels}: names no clips")
    return clips


def clips_from_names(folder: Path, pattern: str | None) -> list[LabelledClip]:
    """Clips labelled by their file names: FSDD's layout by default, else `pattern` (a regular
    expression matched against the whole file name without its suffix)."""
    if pattern is None:
        return [LabelledClip(c.path, c.word, {"speaker": c.speaker, "take": str(c.take)})
                for c in fsdd.list_clips(folder)]
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise InvalidInput(f"--pattern: not a regular expression ({error})") from None
    if "label" not in regex.groupindex:
        raise InvalidInput("--pattern needs a named group (?P<label>...)")
    clips = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        match = regex.fullmatch(path.stem)
        if match and match["label"]:
            fields = {k: v for k, v in match.groupdict().items() if k != "label" and v}
            clips.append(LabelledClip(path.resolve(), match["label"].replace("_", " "), fields))
    if not clips:
        raise NotFound(f"{folder}: no audio file name matches --pattern {pattern!r}")
    return clips


def clip_keys(clips: Sequence[LabelledClip], folder: Path) -> list[str]:
    """Each clip's catalog key, its path in the folder without suffix, refusing two clips of one
    key (x.wav beside x.flac): `index build` would refuse the catalog."""
    keys: dict[str, Path] = {}
    for clip in clips:
        key = "clip:" + Path(os.path.relpath(clip.path, folder)).with_suffix("").as_posix()
        if key in keys:
            raise InvalidInput(f"{os.path.relpath(keys[key], folder)} and {os.path.relpath(clip.path, folder)} "
                               f"would both be catalog key {key!r}: keep one, or rename one")
        keys[key] = clip.path
    return list(keys)


def _group_field(clips: Sequence[LabelledClip], group_by: str | None) -> str:
    names = [group_by] if group_by else [g for g in GROUP_FIELDS if any(g in c.fields for c in clips)]
    missing = next((c for c in clips if not names or names[0] not in c.fields), None)
    if missing is not None:
        wanted = group_by or " or ".join(GROUP_FIELDS)
        raise InvalidInput(f"--group-by {wanted}: {missing.path.name} has no such field "
                           f"(it has: {', '.join(['label', *missing.fields]) })")
    return names[0]


def import_audio(folder: Path, out: Path, *, labels: Path | None = None, pattern: str | None = None,
                 split: str = "random", group_by: str | None = None, test_groups: Sequence[str] = (),
                 test_fraction: float = 0.2, seed: int = 42) -> dict[str, Any]:
    """Write train.jsonl, test.jsonl and catalog.jsonl under `out`; returns what was written."""
    folder, out = Path(folder), Path(out)
    if split not in SPLITS:
        raise InvalidInput(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder")
    if labels is not None and pattern is not None:
        raise InvalidInput("--labels and --pattern are alternatives: give one")
    clips = clips_from_csv(folder, Path(labels)) if labels is not None else clips_from_names(folder, pattern)
    keys = clip_keys(clips, folder.resolve())
    held_groups: list[str] = []
    if split == "random":
        test = random_split(len(clips), test_fraction, seed)
    else:
        groups = [c.fields[_group_field(clips, group_by)] for c in clips]
        test = group_split(groups, test_fraction, seed, test_groups)
        held_groups = sorted({g for g, held in zip(groups, test) if held})
    train_clips = [c for c, held in zip(clips, test) if not held]
    test_clips = [c for c, held in zip(clips, test) if held]
    counts: dict[str, Any] = {"clips": len(clips), "labels": len({c.label for c in clips})}
    for name, part in (("train", train_clips), ("test", test_clips)):
        target = out / f"{name}.jsonl"
        counts[name] = write_rows(target, ({"audio": relative_path(c.path, target), "text": c.label} for c in part))
    catalog = out / "catalog.jsonl"
    rows = [{"key": key, "audio": relative_path(c.path, catalog),
             "metadata": {"label": c.label, **c.fields, "split": "test" if held else "train"}}
            for key, c, held in zip(keys, clips, test)]
    rows += [{"key": f"label:{label}", "text": label, "metadata": {"label": label}}
             for label in sorted({c.label for c in clips})]
    write_rows(catalog, rows)
    return {**counts, "test_groups": held_groups} if held_groups else counts
