"""Spoken-digit data in the Free Spoken Digit Dataset layout (`{digit}_{speaker}_{take}.wav`).

Used by the demo and the tests to make audio ↔ text pair rows and catalogs, and to hold out a
speaker: a model that only ever recalls voices it was trained on has learnt the voices.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from jointspace.errors import InvalidInput, NotFound

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Clip:
    path: Path
    digit: int
    speaker: str
    take: int

    @property
    def word(self) -> str:
        return DIGIT_WORDS[self.digit]


def shipped_fsdd_dir() -> Path:
    return Path(str(resources.files("jointspace") / "demo_data" / "fsdd"))


def list_clips(root: Path) -> list[Clip]:
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    clips = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _NAME.match(path.name)
            if match:
                clips.append(Clip(path.resolve(), int(match[1]), match[2], int(match[3])))
    if not clips:
        raise NotFound(f"{root}: no clips named DIGIT_SPEAKER_TAKE.wav")
    return sorted(clips, key=lambda c: (c.speaker, c.digit, c.take))


def split_by_speaker(clips: Sequence[Clip], held_out: str) -> tuple[list[Clip], list[Clip]]:
    train = [c for c in clips if c.speaker != held_out]
    test = [c for c in clips if c.speaker == held_out]
    if not test:
        speakers = ", ".join(sorted({c.speaker for c in clips}))
        raise InvalidInput(f"speaker {held_out!r} has no clips; speakers: {speakers}")
    return train, test


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out.parent.resolve())).as_posix()


def write_pairs(clips: Sequence[Clip], out: Path) -> int:
    """{"audio": clip, "text": digit word} rows."""
    out = Path(out)
    with out.open("w") as handle:
        for clip in clips:
            handle.write(json.dumps({"audio": _relative(clip.path, out), "text": clip.word}) + "\n")
    return len(clips)


def write_catalog(clips: Sequence[Clip], out: Path, *, include_words: bool = True) -> int:
    """One entry per clip (`clip:<stem>`) and, if asked, one per digit word (`word:<word>`)."""
    out = Path(out)
    rows = [
        {"key": f"clip:{c.path.stem}", "audio": _relative(c.path, out),
         "metadata": {"digit": c.digit, "speaker": c.speaker, "word": c.word}}
        for c in clips
    ]
    if include_words:
        rows += [{"key": f"word:{DIGIT_WORDS[d]}", "text": DIGIT_WORDS[d],
                  "metadata": {"digit": d, "word": DIGIT_WORDS[d]}}
                 for d in sorted({c.digit for c in clips})]
    with out.open("w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return len(rows)
