"""Collaborative-filtering data with hidden structure, at any size up to the seed's scale.

Films belong to hidden taste clusters; each cluster prefers a few genres, and a film's title
names its genres, so text carries part of the signal. Users hold one or two tastes and watch
popular films of those tastes (plus a little noise). Because the clusters are known, tests can
check that a trained space recovers them; because generation is vectorised, a million films and
half a million users take seconds, not hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = (
    "action", "adventure", "animation", "comedy", "crime", "documentary", "drama", "fantasy",
    "horror", "musical", "mystery", "romance", "scifi", "thriller", "war", "western", "family", "noir",
)
_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Lonely", "Endless", "Frozen",
    "Burning", "Secret", "Distant", "Wild", "Quiet", "Electric", "Midnight", "Lost", "Bright",
)
_NOUNS = (
    "Harbor", "Empire", "River", "Garden", "Station", "Kingdom", "Letter", "Mountain", "Mirror",
    "Horizon", "Island", "Machine", "Promise", "Shadow", "Voyage", "Winter", "Signal", "Orchard",
)
NOISE = 0.05  # share of watches drawn from all films, whatever the user's tastes


@dataclass(frozen=True)
class SyntheticConfig:
    n_films: int = 2000
    n_users: int = 3000
    n_tastes: int = 20
    mean_history: int = 20
    seed: int = 0


@dataclass
class SyntheticData:
    film_ids: np.ndarray  # "m:<n>"
    film_titles: list[str]
    film_taste: np.ndarray  # hidden cluster of each film
    film_genres: list[tuple[str, ...]]
    user_ids: np.ndarray  # "u:<n>"
    user_tastes: np.ndarray  # [users, 2], -1 where a user has one taste
    event_user: np.ndarray  # events sorted by user, then time
    event_film: np.ndarray
    event_time: np.ndarray
    user_offsets: np.ndarray  # events of user u: [user_offsets[u], user_offsets[u + 1])

    def events_of_user(self, user: int) -> np.ndarray:
        """The user's films in watch order."""
        return self.event_film[self.user_offsets[user] : self.user_offsets[user + 1]]


def _film_genres(rng: np.random.Generator, taste_genre: np.ndarray, film_taste: np.ndarray) -> np.ndarray:
    """1-3 distinct genres per film from its cluster's distribution (Gumbel top-k)."""
    gumbel = -np.log(-np.log(rng.random((len(film_taste), taste_genre.shape[1]))))
    order = np.argsort(-(np.log(taste_genre[film_taste] + 1e-12) + gumbel), axis=1)[:, :3]
    count = rng.integers(1, 4, len(film_taste))
    return np.where(np.arange(3)[None, :] < count[:, None], order, -1)


def _sample_films(rng: np.random.Generator, tastes: np.ndarray, film_taste: np.ndarray,
                  popularity: np.ndarray) -> np.ndarray:
    """One popularity-weighted film of the given taste per event, vectorised with a cumulative
    sum over films grouped by taste."""
    by_taste = np.argsort(film_taste, kind="stable")
    cumulative = np.cumsum(popularity[by_taste])
    bounds = np.searchsorted(film_taste[by_taste], np.arange(film_taste.max() + 2))
    low = np.where(bounds[:-1] > 0, cumulative[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    high = cumulative[np.maximum(bounds[1:] - 1, 0)]
    target = low[tastes] + rng.random(len(tastes)) * (high[tastes] - low[tastes])
    position = np.minimum(np.searchsorted(cumulative, target, side="right"), len(by_taste) - 1)
    return by_taste[position]


def generate(config: SyntheticConfig) -> SyntheticData:
    rng = np.random.default_rng(config.seed)
    films, users, tastes = config.n_films, config.n_users, min(config.n_tastes, config.n_films)
    taste_genre = rng.dirichlet(np.full(len(GENRES), 0.2), size=tastes)
    film_taste = np.concatenate([np.arange(tastes), rng.integers(0, tastes, films - tastes)])
    rng.shuffle(film_taste)
    genres = _film_genres(rng, taste_genre, film_taste)
    popularity = rng.pareto(1.2, films) + 1.0
    years = rng.integers(1930, 2026, films)
    adjectives = rng.integers(0, len(_ADJECTIVES), films)
    nouns = rng.integers(0, len(_NOUNS), films)
    film_genres = [tuple(GENRES[g] for g in row if g >= 0) for row in genres]
    titles = [
        f"The {_ADJECTIVES[a]} {_NOUNS[n]} ({y}) | {' '.join(g)}"
        for a, n, y, g in zip(adjectives, nouns, years, film_genres)
    ]

    user_tastes = np.full((users, 2), -1, np.int64)
    user_tastes[:, 0] = rng.integers(0, tastes, users)
    two = rng.random(users) < 0.4
    user_tastes[two, 1] = rng.integers(0, tastes, int(two.sum()))
    sigma = 0.8
    lengths = rng.lognormal(np.log(config.mean_history) - sigma**2 / 2, sigma, users)
    lengths = np.clip(np.round(lengths), 2, 200).astype(np.int64)

    event_user = np.repeat(np.arange(users), lengths)
    second = (user_tastes[event_user, 1] >= 0) & (rng.random(len(event_user)) < 0.4)
    event_taste = np.where(second, user_tastes[event_user, 1], user_tastes[event_user, 0])
    event_film = _sample_films(rng, event_taste, film_taste, popularity)
    noise = rng.random(len(event_film)) < NOISE
    event_film[noise] = rng.integers(0, films, int(noise.sum()))

    # Mostly no repeats: keep each (user, film) once, then order each user's events by time.
    _, first = np.unique(event_user * films + event_film, return_index=True)
    event_user, event_film = event_user[first], event_film[first]
    event_time = 946_684_800 + rng.integers(0, 20 * 365 * 86_400, len(event_user))
    order = np.lexsort((event_time, event_user))
    event_user, event_film, event_time = event_user[order], event_film[order], event_time[order]
    offsets = np.searchsorted(event_user, np.arange(users + 1))

    return SyntheticData(
        film_ids=np.char.add("m:", np.arange(films).astype(str)),
        film_titles=titles,
        film_taste=film_taste,
        film_genres=film_genres,
        user_ids=np.char.add("u:", np.arange(users).astype(str)),
        user_tastes=user_tastes,
        event_user=event_user,
        event_film=event_film,
        event_time=event_time,
        user_offsets=offsets,
    )


def write_pairs(data: SyntheticData, out: Path, *, max_history: int = 50, extra_positions: int = 3,
                title_pairs: bool = True, user_pairs: bool = False, seed: int = 0) -> int:
    """History → next film rows (the last watch of every user, plus a few earlier positions),
    title ↔ film rows, and optionally user ↔ film rows. Streams to disk."""
    rng = np.random.default_rng(seed)
    ids = data.film_ids
    rows = 0
    with Path(out).open("w") as handle:
        for user in range(len(data.user_ids)):
            films = data.events_of_user(user)
            if len(films) < 2:
                continue
            earlier = rng.choice(np.arange(1, len(films) - 1), min(extra_positions, len(films) - 2),
                                 replace=False) if len(films) > 2 else []
            for position in [len(films) - 1, *earlier]:
                history = ids[films[max(0, position - max_history) : position]].tolist()
                handle.write(json.dumps({"ids": history, "id": str(ids[films[position]])}) + "\n")
                rows += 1
            if user_pairs:
                for film in films:
                    handle.write(json.dumps({"id:user": str(data.user_ids[user]), "id:item": str(ids[film])}) + "\n")
                rows += len(films) if user_pairs else 0
        if title_pairs:
            for film_id, title in zip(ids, data.film_titles):
                handle.write(json.dumps({"id": str(film_id), "text": title}) + "\n")
            rows += len(ids)
    return rows


def write_catalog(data: SyntheticData, out: Path) -> int:
    with Path(out).open("w") as handle:
        for film_id, title, taste in zip(data.film_ids, data.film_titles, data.film_taste):
            handle.write(json.dumps({"key": str(film_id), "id": str(film_id),
                                     "metadata": {"title": title, "taste": int(taste)}}) + "\n")
    return len(data.film_ids)
