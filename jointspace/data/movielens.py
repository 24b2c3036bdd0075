"""MovieLens-100K-style rating files into pair rows, split into train and test, and a film catalog.

Input: a rating file with `user<TAB>item<TAB>rating<TAB>timestamp` lines (`u.data`) and an item
file with `id|title|release date|video release date|IMDb URL|19 genre flags` lines (`u.item`,
latin-1 in the original; UTF-8 is accepted too). Output in DIR:

- `train.jsonl`, `test.jsonl`: for each rating, `{"id:user": "u:196", "id": "m:242"}`, and
  `{"ids": history, "id": "m:242"}` where the history is the user's films before this one (or all
  their others, `history="all"`), newest last, at most `max_history` (by default 50 newest for
  "earlier" and 200 for "all", see `DEFAULT_MAX_HISTORY`). Histories are built from
  training ratings only, so nothing held out leaks into a query or a training row; a rating
  with an empty history gets no history row. `train.jsonl` also has one `{"id": film, "text":
  "Title (1995) | comedy drama"}` row per film of the item file, tying ids to words.
- `catalog.jsonl`: one row per film (`key` = `id` = `m:<item>`, metadata title, genres,
  release date, number of ratings).

Ratings are treated as "watched", as in the TFRS retrieval tutorial; `rating_weight` makes the
rating the row's weight instead.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.data.rows import read_text_lines, write_rows
from jointspace.data.splits import random_split, time_split
from jointspace.data.synthetic import MOVIELENS_GENRES

ITEM_FIELDS = 5 + len(MOVIELENS_GENRES)
SPLITS = ("random", "time")
HISTORIES = ("earlier", "all")
# Films per history when the caller gives no cap. "earlier" is the next-film setting, where the
# newest films say most; "all" describes a user whose ratings have no order to exploit (a random
# split), and there more of them estimate the user's tastes better: on MovieLens-like data, 200
# instead of 50 raised user → film top-100 at the same top-10, while 200 for "earlier" gained
# nothing (measured on 2026-12-01 with seen films kept; the figures are in the git history of
# docs/benchmarks.md).
DEFAULT_MAX_HISTORY = {"earlier": 50, "all": 200}


@dataclass(frozen=True)
class Film:
    id: str
    title: str
    release: str
    genres: tuple[str, ...]

    @property
    def text(self) -> str:
        """The title with its genres as words, the film's text view."""
        return f"{self.title} | {' '.join(self.genres)}" if self.genres else self.title


@dataclass
class Ratings:
    """One entry per rating line, in file order."""

    user: list[str]
    film: list[str]
    rating: np.ndarray
    time: np.ndarray


def genre_word(name: str) -> str:
    """`Children's` → `children`, `Sci-Fi` → `scifi`: one lower-case word per genre."""
    return re.sub(r"[^a-z0-9]+", "", name.lower().replace("'s", ""))


def read_films(path: Path) -> dict[str, Film]:
    """Films by item id, from `id|title|release|video release|URL|genre flags` lines."""
    films: dict[str, Film] = {}
    for number, line in read_text_lines(path):
        where = f"{path}:{number}"
        fields = line.split("|")
        if len(fields) != ITEM_FIELDS:
            raise InvalidInput(
                f"{where}: expected {ITEM_FIELDS} |-separated fields (id|title|release date|video release "
                f"date|IMDb URL|{len(MOVIELENS_GENRES)} genre flags), got {len(fields)}")
        item, title, release = fields[0].strip(), fields[1].strip(), fields[2].strip()
        flags = [f.strip() for f in fields[5:]]
        if not item or not title:
            raise InvalidInput(f"{where}: the item id and title must not be empty")
        if any(f not in ("0", "1") for f in flags):
            raise InvalidInput(f"{where}: genre flags must be 0 or 1")
        if item in films:
            raise InvalidInput(f"{where}: item {item!r} appears more than once")
        genres = tuple(genre_word(g) for g, f in zip(MOVIELENS_GENRES, flags) if f == "1" and g != "unknown")
        films[item] = Film(item, title, release, genres)
    return films


def read_ratings(path: Path, films: dict[str, Film], items_path: Path) -> Ratings:
    users, film_ids, ratings, times = [], [], [], []
    for number, line in read_text_lines(path):
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 4:
            raise InvalidInput(f"{where}: expected 4 tab-separated fields (user item rating timestamp), "
                               f"got {len(fields)}")
        user, item, rating, stamp = (f.strip() for f in fields)
        if not user or not item:
            raise InvalidInput(f"{where}: user and item must not be empty")
        if item not in films:
            raise InvalidInput(f"{where}: item {item!r} is not in {items_path}")
        try:
            value = float(rating)
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            raise InvalidInput(f"{where}: rating {rating!r} is not a number") from None
        try:
            times.append(int(stamp))
        except ValueError:
            raise InvalidInput(f"{where}: timestamp {stamp!r} is not an integer") from None
        users.append(user)
        film_ids.append(item)
        ratings.append(value)
    return Ratings(users, film_ids, np.array(ratings), np.array(times, np.int64))


def _histories(ratings: Ratings, test: np.ndarray, mode: str, max_history: int) -> list[list[str]]:
    """Each rating's history: the user's training films (before it, or all others), newest last."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for index in np.lexsort((np.arange(len(ratings.user)), ratings.time)).tolist():
        by_user[ratings.user[index]].append(index)
    histories: list[list[str]] = [[] for _ in ratings.user]
    for events in by_user.values():
        seen = [f"m:{ratings.film[i]}" for i in events if not test[i]]
        earlier: list[str] = []
        for index in events:
            film = f"m:{ratings.film[index]}"
            pool = earlier if mode == "earlier" else seen
            histories[index] = [f for f in pool[-(max_history + 1):] if f != film][-max_history:]
            if not test[index]:
                earlier.append(film)
    return histories


def _event_rows(ratings: Ratings, histories: list[list[str]], indices: np.ndarray,
                rating_weight: bool) -> Iterator[dict]:
    for index in indices.tolist():
        weight = {"weight": float(ratings.rating[index])} if rating_weight else {}
        film = f"m:{ratings.film[index]}"
        yield {"id:user": f"u:{ratings.user[index]}", "id": film, **weight}
        if histories[index]:
            yield {"ids": histories[index], "id": film, **weight}


def import_movielens(ratings_path: Path, items_path: Path, out: Path, *, split: str = "random",
                     test_fraction: float = 0.2, seed: int = 42, history: str = "earlier",
                     max_history: int | None = None, rating_weight: bool = False) -> dict[str, int]:
    """Write train.jsonl, test.jsonl and catalog.jsonl under `out`; returns what was written."""
    if split not in SPLITS:
        raise InvalidInput(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if history not in HISTORIES:
        raise InvalidInput(f"--history {history!r}: expected one of {', '.join(HISTORIES)}")
    if max_history is None:
        max_history = DEFAULT_MAX_HISTORY[history]
    if max_history < 1:
        raise InvalidInput(f"--max-history must be at least 1, got {max_history}")
    films = read_films(Path(items_path))
    ratings = read_ratings(Path(ratings_path), films, Path(items_path))
    count = len(ratings.user)
    test = (random_split(count, test_fraction, seed) if split == "random"
            else time_split(ratings.time, test_fraction))
    histories = _histories(ratings, test, history, max_history)
    out = Path(out)
    titles = ({"id": f"m:{f.id}", "text": f.text} for f in films.values())
    train_rows = write_rows(out / "train.jsonl", chain(
        _event_rows(ratings, histories, np.flatnonzero(~test), rating_weight), titles))
    test_rows = write_rows(out / "test.jsonl", _event_rows(ratings, histories, np.flatnonzero(test), rating_weight))
    rated: dict[str, int] = defaultdict(int)
    for item in ratings.film:
        rated[item] += 1
    write_rows(out / "catalog.jsonl", (
        {"key": f"m:{f.id}", "id": f"m:{f.id}",
         "metadata": {"title": f.title, "genres": list(f.genres), "release": f.release, "ratings": rated[f.id]}}
        for f in films.values()))
    return {"ratings": count, "users": len(set(ratings.user)), "films": len(films),
            "test_ratings": int(test.sum()), "train_rows": train_rows, "test_rows": test_rows}
