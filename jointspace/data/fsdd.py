"""Spoken-digit data in the Free Spoken Digit Dataset layout (`{digit}_{speaker}_{take}.wav`).

Used by the demo and the tests to make audio ↔ text pair rows and catalogs, and to hold out a
speaker: a model that only ever recalls voices it was trained on has learnt the voices, not the
words. A subset of the dataset (every speaker and digit, takes 0-11) ships inside the package
under `demo_data/fsdd`, so the demo needs no download; see its ATTRIBUTION.md and LICENSE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data.rows import relative_path, write_rows

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$", re.IGNORECASE)


@dataclass(frozen=True)
class Clip:
    """One recording; the file name is the only source of its labels."""

    path: Path
    digit: int
    speaker: str
    take: int

    @property
    def word(self) -> str:
        """The digit as the text the model should pair with the sound."""
        return DIGIT_WORDS[self.digit]


def shipped_fsdd_dir() -> Path:
    """The FSDD subset inside the installed package (works from a checkout, an editable install
    or a wheel, because it goes through importlib.resources rather than `__file__`)."""
    return Path(str(resources.files("jointspace") / "demo_data" / "fsdd"))


def list_clips(root: Path | str) -> list[Clip]:
    """Every `{digit}_{speaker}_{take}.wav` in `root/recordings/` or directly in `root`.

    Sorted by (speaker, digit, take), so pair files and catalogs built from the same folder are
    byte-identical wherever they are built. Other files are ignored, so a dataset checkout with
    notebooks and READMEs beside the recordings works as is.
    """
    root = Path(root)
    clips: dict[Path, Clip] = {}
    for folder in (root / "recordings", root):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _NAME.match(path.name)
            if match and path.is_file():
                resolved = path.resolve()
                clips[resolved] = Clip(resolved, int(match[1]), match[2], int(match[3]))
    if not clips:
        raise NotFound(f"{root}: no clips named DIGIT_SPEAKER_TAKE.wav here or in recordings/")
    ordered = sorted(clips.values(), key=lambda c: (c.speaker, c.digit, c.take, c.path.name))
    _check_unique_names(ordered)
    return ordered


def _check_unique_names(clips: Sequence[Clip]) -> None:
    """Two files of one name without suffix (in recordings/ and beside it, or x.wav beside
    x.WAV) are the same digit, speaker and take, and `write_catalog` would give both one key."""
    first: dict[str, Path] = {}
    for clip in clips:
        other = first.setdefault(clip.path.stem, clip.path)
        if other != clip.path:
            raise InvalidInput(f"{other} and {clip.path} are both recording {clip.path.stem}: keep one")


def split_by_speaker(clips: Sequence[Clip], held_out: str) -> tuple[list[Clip], list[Clip]]:
    """(train, held-out) where held-out is every clip of one speaker: the honest test of whether
    audio search generalises to a voice the model never heard."""
    train = [c for c in clips if c.speaker != held_out]
    test = [c for c in clips if c.speaker == held_out]
    if not test:
        speakers = ", ".join(sorted({c.speaker for c in clips})) or "none"
        raise InvalidInput(f"speaker {held_out!r} has no clips; speakers: {speakers}")
    return train, test


def write_pairs(clips: Sequence[Clip], out: Path | str) -> int:
    """{"audio": clip, "text": digit word} pair rows, one per clip; returns the rows written.

    Pairing each sound with its word (rather than clips with each other) puts text and audio in
    one space, so a typed word finds recordings and a recording finds its word.
    """
    out = Path(out)
    return write_rows(out, ({"audio": relative_path(c.path, out), "text": c.word} for c in clips))


def write_catalog(clips: Sequence[Clip], out: Path | str, *, include_words: bool = True) -> int:
    """Catalog rows: one per clip (`clip:<stem>`, with digit/speaker/word metadata so results
    can be judged) and, if `include_words`, one per digit word present (`word:<word>`), so that
    audio → text search has words to find. Returns the rows written."""
    out = Path(out)
    rows: list[dict] = [
        {"key": f"clip:{c.path.stem}", "audio": relative_path(c.path, out),
         "metadata": {"digit": c.digit, "speaker": c.speaker, "word": c.word}}
        for c in clips
    ]
    if include_words:
        rows += [{"key": f"word:{DIGIT_WORDS[d]}", "text": DIGIT_WORDS[d],
                  "metadata": {"digit": d, "word": DIGIT_WORDS[d]}}
                 for d in sorted({c.digit for c in clips})]
    return write_rows(out, rows)
