"""Collaborative-filtering data with hidden structure, at any size up to the seed's scale.

Films belong to hidden taste clusters; each cluster prefers a few genres, and a film's title
names its genres, so text carries part of the signal. Users hold one or two tastes and watch
popular films of those tastes (plus a little noise). Because the clusters are known, tests and
the demo can check that a trained space recovers them; because generation is vectorised (no
Python loop per user or per watch), a million films and half a million users take seconds.

Film and user ids are `m:<n>` / `u:<n>` with n the 0-based row index into the arrays here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput

GENRES = (
    "action", "adventure", "animation", "comedy", "crime", "documentary", "drama", "fantasy",
    "horror", "musical", "mystery", "romance", "scifi", "thriller", "war", "western", "family", "noir",
)
# MovieLens-100K's 19 genre columns, in file order, and which of ours each one is.
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
_TO_MOVIELENS = {"family": "Children's", "noir": "Film-Noir", "scifi": "Sci-Fi"}
_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Lonely", "Endless", "Frozen",
    "Burning", "Secret", "Distant", "Wild", "Quiet", "Electric", "Midnight", "Lost", "Bright",
)
# Two latin-1 nouns, as in MovieLens titles, so that encodings are exercised end to end.
_NOUNS = (
    "Harbor", "Empire", "River", "Garden", "Station", "Kingdom", "Letter", "Mountain", "Mirror",
    "Horizon", "Island", "Machine", "Promise", "Shadow", "Voyage", "Winter", "Signal", "Orchard",
    "Château", "Fiancée",
)
NOISE = 0.02  # share of watches drawn uniformly from all films, whatever the user's tastes
ZIPF_EXPONENT = 0.8  # popularity by rank within a taste
SECOND_TASTE = 0.4  # share of users with two tastes
_CHUNK = 200_000  # films per chunk where a step needs [films, genres] floats
_USER_BLOCK = 50_000  # users per block of watch sampling (fixed: the output depends on it)
_EPOCH = 852_076_800  # 1997-01-01, MovieLens-ish
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed; the same config always yields the same data."""

    n_films: int = 2000
    n_users: int = 3000
    n_tastes: int = 20
    mean_history: int = 20
    seed: int = 0
    # Global popularity (0 keeps the original generator, where films are popular only within
    # their taste and the 100 most watched films find few held-out watches). Real MovieLens has
    # blockbusters that everyone watches: `popular_share` of the watches are drawn from one
    # Zipf ranking of all films (`popular_exponent`), and within a taste films follow the same
    # ranking, so a taste's favourites are also the globally popular films.
    popular_share: float = 0.0
    popular_exponent: float = 1.0
    popular_offset: float = 0.0  # the global ranking's flat head, in films (see _Catalogue)
    max_history: int = 200  # longest history (real MovieLens-100K: 737)

    def __post_init__(self) -> None:
        for name in ("n_films", "n_users", "n_tastes"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 2 <= self.mean_history <= self.max_history:
            raise InvalidInput(f"mean_history must be between 2 and max_history ({self.max_history}), "
                               f"got {self.mean_history}")
        if not 0.0 <= self.popular_share < 1.0:
            raise InvalidInput(f"popular_share must be in [0, 1), got {self.popular_share}")
        if self.popular_exponent <= 0:
            raise InvalidInput(f"popular_exponent must be positive, got {self.popular_exponent}")
        if self.popular_offset < 0:
            raise InvalidInput(f"popular_offset must not be negative, got {self.popular_offset}")


@dataclass
class SyntheticData:
    """Films, users and watch events; the hidden labels (`film_taste`, `user_tastes`) are what a
    good embedding should recover."""

    film_ids: np.ndarray  # str "m:<n>"
    film_titles: list[str]  # "The Silent Harbor (1987) | drama romance"
    film_taste: np.ndarray  # int, hidden cluster of each film
    film_genres: list[tuple[str, ...]]  # 1-3 of GENRES, all named in the title
    film_years: np.ndarray  # int, the year in the title
    film_popularity: np.ndarray  # float, chance of being picked for a watch of the film's taste
    user_ids: np.ndarray  # str "u:<n>"
    user_tastes: np.ndarray  # int [users, 2]; column 1 is -1 where a user has one taste
    event_user: np.ndarray  # int, events sorted by user, then time
    event_film: np.ndarray  # int
    event_time: np.ndarray  # int64 Unix seconds, strictly increasing within a user
    user_offsets: np.ndarray  # events of user u: [user_offsets[u], user_offsets[u + 1])

    def events_of_user(self, user: int) -> np.ndarray:
        """The user's film indices in watch order."""
        return self.event_film[self.user_offsets[user] : self.user_offsets[user + 1]]

    def history_lengths(self) -> np.ndarray:
        """Events per user."""
        return np.diff(self.user_offsets)


def _film_genres(rng: np.random.Generator, taste_genre: np.ndarray, film_taste: np.ndarray) -> np.ndarray:
    """1-3 distinct genres per film drawn from its cluster's distribution, without replacement
    (Gumbel top-k), as [films, 3] with -1 padding. Chunked to bound memory at a million films."""
    count = rng.integers(1, 4, len(film_taste))
    log_p = np.log(taste_genre + 1e-12)
    out = np.empty((len(film_taste), 3), np.int64)
    for start in range(0, len(film_taste), _CHUNK):
        tastes = film_taste[start : start + _CHUNK]
        gumbel = -np.log(-np.log(rng.random((len(tastes), taste_genre.shape[1])) + 1e-300))
        out[start : start + len(tastes)] = np.argsort(-(log_p[tastes] + gumbel), axis=1)[:, :3]
    return np.where(np.arange(3)[None, :] < count[:, None], out, -1)


@dataclass(frozen=True)
class _Catalogue:
    """Films grouped by taste, each group in random order (or in the order of `key`): a film's
    place in its group is its popularity rank. Rank r has probability mass
    (r + 2)^(1-s) - (r + 1)^(1-s) (normalised; log((r + 2)/(r + 1)) for s = 1), which is
    Zipf-like ((r + 1.5)^-s, up to a constant) and is exactly the floor of a continuous
    power-law draw, so sampling is O(1) per watch with no cumulative table or search. An
    `offset` q shifts the law to (r + 1.5 + q)^-s (Zipf-Mandelbrot): a flat head of about q
    films of similar popularity, as real catalogues have, before the power-law decay."""

    order: np.ndarray  # film indices, grouped by taste
    starts: np.ndarray  # group t is order[starts[t] : starts[t + 1]]
    exponent: float = ZIPF_EXPONENT
    offset: float = 0.0

    @classmethod
    def build(cls, rng: np.random.Generator, film_taste: np.ndarray, tastes: int,
              key: np.ndarray | None = None, exponent: float = ZIPF_EXPONENT, offset: float = 0.0) -> _Catalogue:
        order = np.lexsort((rng.random(len(film_taste)) if key is None else key, film_taste))
        return cls(order, np.searchsorted(film_taste[order], np.arange(tastes + 1)), exponent, offset)

    def popularity(self) -> np.ndarray:
        """Each film's probability of being drawn for a watch of its taste."""
        rank = np.empty(len(self.order), np.float64)
        sizes = np.diff(self.starts)
        rank[self.order] = np.arange(len(self.order)) - np.repeat(self.starts[:-1], sizes)
        taste = np.empty(len(self.order), np.int64)
        taste[self.order] = np.repeat(np.arange(len(sizes)), sizes)
        return self._mass(rank + 1.0, rank + 2.0) / self._mass(1.0, sizes[taste] + 1.0)

    def _mass(self, low: Any, high: Any) -> Any:
        """The power law's unnormalised mass between two points of the shifted rank axis."""
        e, q = 1.0 - self.exponent, self.offset
        if abs(e) < 1e-9:
            return np.log((high + q) / (low + q))
        return (high + q) ** e - (low + q) ** e

    def sample(self, rng: np.random.Generator, tastes: np.ndarray) -> np.ndarray:
        """One popularity-weighted film of each given taste."""
        e, q = 1.0 - self.exponent, self.offset
        low = self.starts[:-1][tastes]
        size = self.starts[1:][tastes] - low
        u = rng.random(len(tastes))
        if abs(e) < 1e-9:
            x = (1.0 + q) * ((size + 1.0 + q) / (1.0 + q)) ** u - q
        else:
            x = ((1.0 + q) ** e + u * ((size + 1.0 + q) ** e - (1.0 + q) ** e)) ** (1.0 / e) - q
        rank = np.minimum(x.astype(np.int64) - 1, size - 1)
        return self.order[low + rank]


def _watches(rng: np.random.Generator, block: np.ndarray, lengths: np.ndarray, user_tastes: np.ndarray,
             second_share: np.ndarray, catalogue: _Catalogue, films: int,
             popular: _Catalogue | None = None, popular_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(user, film) watches of a block of consecutive users, grouped by user in watch order.

    Draws about twice the wanted history of each user, drops repeats of a film (keeping the
    first), and keeps the first `length`: histories without repeats, at the wanted lengths
    unless a user's tastes hold fewer films than that."""
    draws = 2 * lengths[block] + 3
    user = np.repeat(block, draws)
    second = (user_tastes[user, 1] >= 0) & (rng.random(len(user)) < second_share[user])
    film = catalogue.sample(rng, np.where(second, user_tastes[user, 1], user_tastes[user, 0]))
    noise = np.flatnonzero(rng.random(len(film)) < NOISE)
    film[noise] = rng.integers(0, films, len(noise))
    if popular is not None:
        chosen = np.flatnonzero(rng.random(len(film)) < popular_share)
        film[chosen] = popular.sample(rng, np.zeros(len(chosen), np.int64))
    _, first = np.unique(user * np.int64(films) + film, return_index=True)
    first.sort()  # back to draw order, which is grouped by user
    user, film = user[first], film[first]
    starts = np.searchsorted(user, block)
    keep = (np.arange(len(user)) - starts[user - block[0]]) < lengths[user]
    return user[keep], film[keep]


def _titles(rng: np.random.Generator, film_genres: list[tuple[str, ...]]) -> tuple[list[str], np.ndarray]:
    years = rng.integers(1930, 2026, len(film_genres))
    adjectives = rng.integers(0, len(_ADJECTIVES), len(film_genres))
    nouns = rng.integers(0, len(_NOUNS), len(film_genres))
    titles = [
        f"The {_ADJECTIVES[a]} {_NOUNS[n]} ({y}) | {' '.join(g)}"
        for a, n, y, g in zip(adjectives.tolist(), nouns.tolist(), years.tolist(), film_genres)
    ]
    return titles, years


def _prefixed(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.arange(n).astype(str))


def generate(config: SyntheticConfig) -> SyntheticData:
    """Draw a data set; deterministic given `config` (including its seed).

    Model: each of T tastes is a sparse distribution over GENRES (Dirichlet, α=0.2); each film
    has one taste (its hidden label), 1-3 genres from that taste, and a Zipf popularity by its
    random rank within the taste. Each user has one or two tastes and a history length
    from a clipped lognormal (mean ≈ mean_history, 2..max_history); watches are
    popularity-weighted films of the user's tastes, 2% noise from all films, no film twice,
    times increasing. With `popular_share` > 0 the ranks within tastes follow one global
    ranking, and that share of the watches is drawn from it over all films.
    """
    rng = np.random.default_rng(config.seed)
    films, users = config.n_films, config.n_users
    tastes = min(config.n_tastes, films)

    taste_genre = rng.dirichlet(np.full(len(GENRES), 0.2), size=tastes)
    # Every taste gets at least one film; the rest are uniform over tastes.
    film_taste = np.concatenate([np.arange(tastes), rng.integers(0, tastes, films - tastes)])
    rng.shuffle(film_taste)
    genres = _film_genres(rng, taste_genre, film_taste)
    genre_names = np.array(GENRES + ("",), dtype=object)
    film_genres = [tuple(g for g in row if g) for row in genre_names[genres].tolist()]
    titles, years = _titles(rng, film_genres)
    popular, global_rank = None, None
    if config.popular_share > 0:
        global_rank = rng.permutation(films)
        popular = _Catalogue.build(rng, np.zeros(films, np.int64), 1, global_rank, config.popular_exponent,
                                  config.popular_offset)
    catalogue = _Catalogue.build(rng, film_taste, tastes, global_rank)

    user_tastes = np.full((users, 2), -1, np.int64)
    user_tastes[:, 0] = rng.integers(0, tastes, users)
    if tastes > 1:
        two = np.flatnonzero(rng.random(users) < SECOND_TASTE)
        user_tastes[two, 1] = (user_tastes[two, 0] + rng.integers(1, tastes, len(two))) % tastes
    second_share = rng.uniform(0.2, 0.5, users)
    sigma = 0.8
    lengths = rng.lognormal(np.log(config.mean_history) - sigma**2 / 2, sigma, users)
    lengths = np.clip(np.round(lengths), 2, config.max_history).astype(np.int64)
    lengths = np.minimum(lengths, films)

    # Watches are drawn for blocks of users, so that temporaries stay small at any scale.
    blocks = [
        _watches(rng, np.arange(first, min(first + _USER_BLOCK, users)), lengths, user_tastes,
                 second_share, catalogue, films, popular, config.popular_share)
        for first in range(0, users, _USER_BLOCK)
    ]
    event_user = np.concatenate([b[0] for b in blocks])
    event_film = np.concatenate([b[1] for b in blocks])
    del blocks
    offsets = np.searchsorted(event_user, np.arange(users + 1))

    # Times: a start per user, then gaps of at least a minute (mean about three days).
    gaps = rng.exponential(3 * 86_400, len(event_user)).astype(np.int64) + 60
    elapsed = np.cumsum(gaps)
    del gaps
    before = np.concatenate([[0], elapsed])[offsets[:-1]]
    start = _EPOCH + rng.integers(0, 15 * 365 * 86_400, users)
    event_time = start[event_user] + elapsed - before[event_user]
    del elapsed

    return SyntheticData(
        film_ids=_prefixed("m:", films),
        film_titles=titles,
        film_taste=film_taste,
        film_genres=film_genres,
        film_years=years,
        film_popularity=catalogue.popularity(),
        user_ids=_prefixed("u:", users),
        user_tastes=user_tastes,
        event_user=event_user,
        event_film=event_film,
        event_time=event_time,
        user_offsets=offsets,
    )


def _positions(data: SyntheticData, extra_positions: int, rng: np.random.Generator) -> np.ndarray:
    """Global event indices used as prediction targets: each user's last watch and up to
    `extra_positions` random earlier ones (never the first, which has no history), sorted."""
    lengths = data.history_lengths()
    n = len(data.event_user)
    user = data.event_user
    rank = np.arange(n) - data.user_offsets[user]
    last = (rank == lengths[user] - 1) & (lengths[user] >= 2)
    if extra_positions <= 0:
        return np.flatnonzero(last)
    candidates = np.flatnonzero((rank >= 1) & (rank < lengths[user] - 1))
    order = candidates[np.lexsort((rng.random(len(candidates)), user[candidates]))]
    group_start = np.searchsorted(user[order], user[order], side="left")
    chosen = order[(np.arange(len(order)) - group_start) < extra_positions]
    return np.sort(np.concatenate([np.flatnonzero(last), chosen]))


def _history_lines(data: SyntheticData, positions: np.ndarray, max_history: int) -> Iterator[str]:
    quoted = np.array([json.dumps(str(f)) for f in data.film_ids.tolist()], dtype=object)
    events = quoted[data.event_film].tolist()
    users = data.event_user
    offsets = data.user_offsets
    for p in positions.tolist():
        begin = max(int(offsets[users[p]]), p - max_history)
        yield f'{{"ids": [{", ".join(events[begin:p])}], "id": {events[p]}}}\n'


def _zipped(*arrays: np.ndarray, chunk: int = 100_000) -> Iterator[tuple]:
    """zip() over arrays as Python ints, a slice at a time: `tolist()` of ten million events
    at once would hold gigabytes of int objects."""
    for start in range(0, len(arrays[0]), chunk):
        yield from zip(*(a[start : start + chunk].tolist() for a in arrays))


def _write_chunked(handle, lines: Iterator[str], chunk: int = 20_000) -> int:
    written, buffer = 0, []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= chunk:
            handle.write("".join(buffer))
            written += len(buffer)
            buffer.clear()
    handle.write("".join(buffer))
    return written + len(buffer)


def write_pairs(data: SyntheticData, out: Path | str, *, max_history: int = 50, extra_positions: int = 3,
                title_pairs: bool = True, user_pairs: bool = False, seed: int = 0) -> int:
    """Write pair rows as JSON Lines, streaming (no list of row dicts, whatever the size):

    - history → next film, `{"ids": [up to max_history previous films], "id": film}`, for every
      user's last watch plus up to `extra_positions` random earlier watches (more rows per user
      without letting heavy users dominate);
    - `{"id": film, "text": title}` for every film if `title_pairs`, tying ids to text;
    - `{"id:user": user, "id:item": film}` for every watch if `user_pairs`.

    Returns the rows written. Which earlier positions are used depends only on `seed`.
    """
    if max_history < 1:
        raise InvalidInput(f"max_history must be at least 1, got {max_history}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    positions = _positions(data, extra_positions, np.random.default_rng(seed))
    with out.open("w", encoding="utf-8") as handle:
        rows = _write_chunked(handle, _history_lines(data, positions, max_history))
        if title_pairs:
            rows += _write_chunked(handle, (
                f'{{"id": "{film_id}", "text": {json.dumps(title)}}}\n'
                for film_id, title in zip(data.film_ids.tolist(), data.film_titles)))
        if user_pairs:
            film_ids = data.film_ids.tolist()
            user_ids = data.user_ids.tolist()
            rows += _write_chunked(handle, (
                f'{{"id:user": "{user_ids[u]}", "id:item": "{film_ids[f]}"}}\n'
                for u, f in _zipped(data.event_user, data.event_film)))
    return rows


def write_catalog(data: SyntheticData, out: Path | str) -> int:
    """One catalog row per film, `{"key": id, "id": id, "metadata": {"title", "taste"}}`: the
    hidden taste rides along so search results can be judged. Returns the rows written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        return _write_chunked(handle, (
            json.dumps({"key": film_id, "id": film_id, "metadata": {"title": title, "taste": taste}}) + "\n"
            for film_id, title, taste in zip(data.film_ids.tolist(), data.film_titles,
                                             data.film_taste.tolist())))


def _bare_title(title: str) -> str:
    return title.split(" | ", 1)[0]


def write_movielens(data: SyntheticData, out_dir: Path | str) -> tuple[Path, Path]:
    """Write the data as MovieLens-100K files, so a MovieLens importer can be tested without the
    real (non-redistributable) data set. Returns the paths of `u.data` and `u.item`.

    - `u.data`: `user\\titem\\trating\\ttimestamp`, one line per watch. Ids are the numbers of
      `u:<n>` / `m:<n>` (0-based, unlike real MovieLens which starts at 1), so imported ids match
      `film_ids` / `user_ids`. Ratings are 1-5, higher for films of the user's own tastes.
    - `u.item`: `id|title|release date|video release date|IMDb URL|19 genre flags`, latin-1, the
      title without the genre suffix (genres are in the flags, as in MovieLens).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    films, users = data.event_film, data.event_user
    taste = data.film_taste[films]
    own = (taste == data.user_tastes[users, 0]) | (taste == data.user_tastes[users, 1])
    liked = rng.choice(5, len(films), p=[0.03, 0.07, 0.25, 0.37, 0.28]) + 1
    other = rng.choice(5, len(films), p=[0.15, 0.25, 0.35, 0.2, 0.05]) + 1
    ratings = np.where(own, liked, other)
    data_path, item_path = out_dir / "u.data", out_dir / "u.item"
    with data_path.open("w", encoding="latin-1", newline="\n") as handle:
        _write_chunked(handle, (
            f"{u}\t{f}\t{r}\t{t}\n"
            for u, f, r, t in _zipped(users, films, ratings, data.event_time)))
    column = {g: MOVIELENS_GENRES.index(_TO_MOVIELENS.get(g, g.capitalize())) for g in GENRES}
    days = rng.integers(1, 29, len(data.film_ids)).tolist()
    months = rng.integers(0, 12, len(data.film_ids)).tolist()

    def item_lines() -> Iterator[str]:
        for n, (title, genres, year, day, month) in enumerate(
                zip(data.film_titles, data.film_genres, data.film_years.tolist(), days, months)):
            flags = ["0"] * len(MOVIELENS_GENRES)
            for g in genres:
                flags[column[g]] = "1"
            if not genres:
                flags[0] = "1"
            bare = _bare_title(title)
            url = "http://us.imdb.com/M/title-exact?" + bare.replace(" ", "%20")
            date = f"{day:02d}-{_MONTH_NAMES[month]}-{year}"
            yield f"{n}|{bare}|{date}||{url}|{'|'.join(flags)}\n"

    with item_path.open("w", encoding="latin-1", newline="\n") as handle:
        _write_chunked(handle, item_lines())
    return data_path, item_path
