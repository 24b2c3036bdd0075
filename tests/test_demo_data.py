"""The data the demo ships and generates: the FSDD subset, its helpers, and the synthetic films."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from jointspace.core.errors import InvalidInput, NotFound
from jointspace.data.fsdd import (
    DIGIT_WORDS,
    Clip,
    list_clips,
    shipped_fsdd_dir,
    split_by_speaker,
)
from jointspace.data.fsdd import (
    write_catalog as write_clip_catalog,
)
from jointspace.data.fsdd import (
    write_pairs as write_clip_pairs,
)
from jointspace.data.synthetic import (
    GENRES,
    MOVIELENS_GENRES,
    SyntheticConfig,
    SyntheticData,
    generate,
    write_catalog,
    write_movielens,
    write_pairs,
)

SPEAKERS = {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the shipped FSDD subset -------------------------------------------------------------------


def test_shipped_subset_has_every_speaker_and_digit() -> None:
    clips = list_clips(shipped_fsdd_dir())
    counts = Counter((c.speaker, c.digit) for c in clips)
    assert {s for s, _ in counts} == SPEAKERS
    assert {d for _, d in counts} == set(range(10))
    assert len(counts) == 60
    assert len(set(counts.values())) == 1  # the same takes everywhere
    assert sum(counts.values()) == len(clips) >= 600


def test_shipped_subset_is_small_and_readable() -> None:
    root = shipped_fsdd_dir()
    files = list((root / "recordings").glob("*.wav"))
    assert sum(f.stat().st_size for f in files) < 8_000_000
    samples, rate = soundfile.read(files[0])
    assert rate == 8000 and samples.ndim == 1 and len(samples) > 1000


def test_shipped_subset_carries_attribution_and_license() -> None:
    root = shipped_fsdd_dir()
    attribution = (root / "ATTRIBUTION.md").read_text(encoding="utf-8")
    license_text = (root / "LICENSE").read_text(encoding="utf-8")
    for text in (attribution, license_text):
        assert "CC BY-SA 4.0" in text
    assert "Zohar Jackson" in attribution and "subset" in attribution.lower()
    assert "Copyright (c) Zohar Jackson and contributors" in license_text
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in license_text
    assert "Attribution-ShareAlike 4.0 International" in license_text
    assert "unmodified" in license_text
    speakers = json.loads((root / "speakers.json").read_text(encoding="utf-8"))
    assert set(speakers) == SPEAKERS


# --- FSDD helpers -------------------------------------------------------------------------------


@pytest.fixture()
def fsdd_folder(tmp_path: Path) -> Path:
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for name in ("7_theo_3.wav", "0_ann_12.wav", "7_ann_0.wav", "3_bob_1.wav", "3_bob_0.wav"):
        (root / "recordings" / name).write_bytes(b"RIFF")
    (root / "recordings" / "notes.txt").write_text("not a clip")
    (root / "README.md").write_text("not a clip")
    return root


def test_list_clips_parses_names_in_a_stable_order(fsdd_folder: Path) -> None:
    clips = list_clips(fsdd_folder)
    assert [(c.speaker, c.digit, c.take) for c in clips] == [
        ("ann", 0, 12), ("ann", 7, 0), ("bob", 3, 0), ("bob", 3, 1), ("theo", 7, 3)]
    assert clips[-1].word == "seven" and clips[0].word == "zero"
    assert all(c.path.is_absolute() and c.path.is_file() for c in clips)
    assert clips == list_clips(str(fsdd_folder))


def test_list_clips_accepts_a_flat_folder(tmp_path: Path) -> None:
    (tmp_path / "9_zed_4.wav").write_bytes(b"RIFF")
    assert list_clips(tmp_path) == [Clip((tmp_path / "9_zed_4.wav").resolve(), 9, "zed", 4)]


def test_list_clips_without_clips_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no clips"):
        list_clips(tmp_path)
    with pytest.raises(NotFound):
        list_clips(tmp_path / "missing")


def test_digit_words() -> None:
    assert DIGIT_WORDS[0] == "zero" and DIGIT_WORDS[9] == "nine" and len(DIGIT_WORDS) == 10


def test_clip_pairs_have_relative_paths_that_resolve(fsdd_folder: Path, tmp_path: Path) -> None:
    clips = list_clips(fsdd_folder)
    out = tmp_path / "data" / "pairs.jsonl"
    assert write_clip_pairs(clips, out) == len(clips)
    rows = _jsonl(out)
    assert len(rows) == len(clips)
    for row, clip in zip(rows, clips):
        assert set(row) == {"audio", "text"} and row["text"] == clip.word
        assert not Path(row["audio"]).is_absolute() and "\\" not in row["audio"]
        assert (out.parent / row["audio"]).resolve() == clip.path


def test_clip_catalog_rows(fsdd_folder: Path, tmp_path: Path) -> None:
    clips = list_clips(fsdd_folder)
    out = tmp_path / "catalog.jsonl"
    assert write_clip_catalog(clips, out) == len(clips) + 3  # words zero, three, seven
    rows = _jsonl(out)
    keys = [r["key"] for r in rows]
    assert len(set(keys)) == len(keys)
    audio = [r for r in rows if "audio" in r]
    words = [r for r in rows if "text" in r]
    assert [r["key"] for r in audio] == [f"clip:{c.path.stem}" for c in clips]
    for row, clip in zip(audio, clips):
        assert (out.parent / row["audio"]).resolve() == clip.path
        assert row["metadata"] == {"digit": clip.digit, "speaker": clip.speaker, "word": clip.word}
    assert [(r["key"], r["text"], r["metadata"]["digit"]) for r in words] == [
        ("word:zero", "zero", 0), ("word:three", "three", 3), ("word:seven", "seven", 7)]
    for row in rows:  # exactly one content field, as the catalog format requires
        assert sum(f in row for f in ("id", "text", "audio", "vector")) == 1
    assert write_clip_catalog(clips, out, include_words=False) == len(clips)


def test_shipped_pairs_resolve(tmp_path: Path) -> None:
    clips = list_clips(shipped_fsdd_dir())
    out = tmp_path / "pairs.jsonl"
    write_clip_pairs(clips[:20], out)
    assert all((out.parent / r["audio"]).is_file() for r in _jsonl(out))


def test_split_by_speaker(fsdd_folder: Path) -> None:
    clips = list_clips(fsdd_folder)
    train, held_out = split_by_speaker(clips, "bob")
    assert {c.speaker for c in held_out} == {"bob"} and len(held_out) == 2
    assert "bob" not in {c.speaker for c in train} and len(train) + len(held_out) == len(clips)
    with pytest.raises(InvalidInput, match="nobody"):
        split_by_speaker(clips, "nobody")


# --- synthetic films ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def films() -> SyntheticData:
    return generate(SyntheticConfig(n_films=2000, n_users=3000, seed=3))


def test_generate_is_deterministic() -> None:
    config = SyntheticConfig(n_films=500, n_users=400, seed=11)
    a, b = generate(config), generate(config)
    for name in ("film_ids", "film_taste", "user_tastes", "event_user", "event_film", "event_time"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.film_titles == b.film_titles and a.film_genres == b.film_genres
    c = generate(SyntheticConfig(n_films=500, n_users=400, seed=12))
    assert not np.array_equal(a.event_film, c.event_film)


def test_generate_sizes_and_ids(films: SyntheticData) -> None:
    assert len(films.film_ids) == len(films.film_titles) == len(films.film_genres) == 2000
    assert len(films.film_taste) == len(films.film_popularity) == 2000
    assert len(films.user_ids) == len(films.user_tastes) == 3000
    assert films.film_ids[0] == "m:0" and films.film_ids[-1] == "m:1999"
    assert films.user_ids[0] == "u:0" and films.user_ids[-1] == "u:2999"
    assert set(np.unique(films.film_taste)) == set(range(20))
    assert len(films.event_user) == len(films.event_film) == len(films.event_time)
    lengths = films.history_lengths()
    assert lengths.sum() == len(films.event_user) and lengths.min() >= 2 and lengths.max() <= 200
    assert 15 <= lengths.mean() <= 25


def test_events_are_sorted_by_user_then_time_without_repeats(films: SyntheticData) -> None:
    assert np.all(np.diff(films.event_user) >= 0)
    same_user = np.diff(films.event_user) == 0
    assert np.all(np.diff(films.event_time)[same_user] > 0)
    pairs = films.event_user * len(films.film_ids) + films.event_film
    assert len(np.unique(pairs)) == len(pairs)
    assert np.array_equal(films.events_of_user(5), films.event_film[films.event_user == 5])


def test_titles_name_their_genres(films: SyntheticData) -> None:
    for title, genres in zip(films.film_titles, films.film_genres):
        assert 1 <= len(genres) <= 3 and len(set(genres)) == len(genres)
        assert set(genres) <= set(GENRES)
        assert title.split(" | ")[1].split() == list(genres)
    assert 15 <= len(GENRES) <= 20


def test_users_watch_films_of_their_tastes(films: SyntheticData) -> None:
    tastes = films.user_tastes
    assert np.all(tastes[:, 0] >= 0) and np.all(tastes[:, 0] != tastes[:, 1])
    assert 0.2 < np.mean(tastes[:, 1] >= 0) < 0.6
    taste = films.film_taste[films.event_film]
    own = (taste == tastes[films.event_user, 0]) | (taste == tastes[films.event_user, 1])
    assert own.mean() > 0.95
    per_user = np.bincount(films.event_user, weights=own) / films.history_lengths()
    assert np.mean(per_user < 0.8) < 0.02


def test_genres_follow_tastes(films: SyntheticData) -> None:
    """The genre mix differs by taste: the structure text can pick up."""
    top = []
    for t in range(20):
        counts = Counter(g for g, k in zip(films.film_genres, films.film_taste) if k == t for g in g)
        top.append(counts.most_common(1)[0][0])
    assert len(set(top)) >= 6


def test_popularity_is_long_tailed_and_matches_watches(films: SyntheticData) -> None:
    pop = films.film_popularity
    for t in range(3):
        assert pop[films.film_taste == t].sum() == pytest.approx(1.0)
    most = np.argmax(pop)
    counts = np.bincount(films.event_film, minlength=len(pop))
    assert counts[most] > 5 * np.median(counts)


def test_write_pairs(films: SyntheticData, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    rows = write_pairs(films, out, max_history=10)
    lines = _jsonl(out)
    assert rows == len(lines)
    histories = [r for r in lines if "ids" in r]
    titles = [r for r in lines if "text" in r]
    assert len(titles) == 2000 and len(histories) + len(titles) == rows
    lengths = films.history_lengths()
    assert len(histories) == int(np.sum(1 + np.minimum(3, lengths - 2)))
    ids = set(films.film_ids.tolist())
    for row in histories:
        assert set(row) == {"ids", "id"} and 1 <= len(row["ids"]) <= 10
        assert row["id"] in ids and set(row["ids"]) <= ids and row["id"] not in row["ids"]
    # The first row of user 0 is its last watch, preceded by its previous (up to 10) watches.
    watched = films.film_ids[films.events_of_user(0)].tolist()
    assert {"ids": watched[-11:-1], "id": watched[-1]} in histories
    assert titles[0] == {"id": "m:0", "text": films.film_titles[0]}
    assert write_pairs(films, tmp_path / "again.jsonl", max_history=10) == rows
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_write_pairs_options(films: SyntheticData, tmp_path: Path) -> None:
    out = tmp_path / "users.jsonl"
    rows = write_pairs(films, out, title_pairs=False, user_pairs=True, extra_positions=0)
    lines = _jsonl(out)
    assert rows == len(lines) == 3000 + len(films.event_film)
    users = [r for r in lines if "id:user" in r]
    assert len(users) == len(films.event_film)
    assert users[0] == {"id:user": "u:0", "id:item": str(films.film_ids[films.event_film[0]])}
    assert not any("text" in r for r in lines)


def test_write_catalog(films: SyntheticData, tmp_path: Path) -> None:
    out = tmp_path / "catalog.jsonl"
    assert write_catalog(films, out) == 2000
    rows = _jsonl(out)
    assert rows[7] == {"key": "m:7", "id": "m:7",
                       "metadata": {"title": films.film_titles[7], "taste": int(films.film_taste[7])}}
    assert len({r["key"] for r in rows}) == 2000


def test_write_movielens(films: SyntheticData, tmp_path: Path) -> None:
    data_path, item_path = write_movielens(films, tmp_path / "ml-100k")
    assert data_path.name == "u.data" and item_path.name == "u.item"
    ratings = [line.split("\t") for line in data_path.read_text(encoding="latin-1").splitlines()]
    assert len(ratings) == len(films.event_film)
    assert all(len(r) == 4 for r in ratings)
    user, item, rating, stamp = (np.array([int(r[i]) for r in ratings]) for i in range(4))
    assert np.array_equal(user, films.event_user) and np.array_equal(item, films.event_film)
    assert np.array_equal(stamp, films.event_time)
    assert set(rating.tolist()) <= {1, 2, 3, 4, 5} and len(set(rating.tolist())) == 5

    raw = item_path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # latin-1 titles (Château, Fiancée), as in MovieLens
    items = [line.split("|") for line in raw.decode("latin-1").splitlines()]
    assert len(items) == 2000 and all(len(i) == 5 + len(MOVIELENS_GENRES) for i in items)
    for number, fields in enumerate(items):
        assert int(fields[0]) == number
        assert fields[1] == films.film_titles[number].split(" | ")[0]
        assert fields[2].endswith(str(films.film_years[number])) and fields[3] == ""
        flags = [MOVIELENS_GENRES[i] for i, f in enumerate(fields[5:]) if f == "1"]
        assert len(flags) == len(films.film_genres[number])
        assert set(fields[5:]) <= {"0", "1"}


def test_generate_at_scale() -> None:
    data = generate(SyntheticConfig(n_films=200_000, n_users=100_000, seed=1))
    assert len(data.film_ids) == 200_000 and len(data.user_ids) == 100_000
    assert 15 <= data.history_lengths().mean() <= 25


def test_config_is_validated() -> None:
    with pytest.raises(InvalidInput):
        SyntheticConfig(n_films=0)
    with pytest.raises(InvalidInput):
        SyntheticConfig(mean_history=1)
