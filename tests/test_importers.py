"""Importers through the real command line: MovieLens-format files made by the synthetic generator
(latin-1 titles with accents), a folder of spoken-digit clips, the three kinds of split, and bad
files that must give one-line errors naming the file and line."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from jointspace.core.errors import InvalidInput
from jointspace.data import fsdd, synthetic
from jointspace.data.splits import group_split, random_split, time_split
from test_cli import assert_one_line_error, jointspace


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> tuple[synthetic.SyntheticData, Path, Path]:
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=150, n_users=120, n_tastes=6, seed=5))
    ratings, items = synthetic.write_movielens(data, tmp_path_factory.mktemp("movielens"))
    return data, ratings, items


def run_import(ratings: Path, items: Path, out: Path, *extra: str) -> dict[str, list[dict]]:
    result = jointspace("import", "movielens", str(ratings), "--items", str(items), "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "test", "catalog")}


def test_movielens_import_makes_user_history_and_title_rows(movielens, tmp_path):
    data, ratings, items = movielens
    files = run_import(ratings, items, tmp_path)
    events = len(data.event_film)
    user_rows = {name: [r for r in rows if "id:user" in r] for name, rows in files.items()}
    assert len(user_rows["train"]) + len(user_rows["test"]) == events
    assert len(user_rows["test"]) == round(0.2 * events)
    held_out = {(r["id:user"], r["id"]) for r in user_rows["test"]}
    trained = {(r["id:user"], r["id"]) for r in user_rows["train"]}
    assert not held_out & trained

    # Histories: only the user's training films, watched before the target, never the target.
    when = {(f"u:{u}", f"m:{f}"): t for u, f, t in zip(data.event_user, data.event_film, data.event_time)}
    train_films = defaultdict(set)
    for user, film in trained:
        train_films[user].add(film)
    for name in ("train", "test"):
        rows = files[name]
        for row, following in zip(rows, rows[1:]):
            if "ids" not in following:
                continue
            user, target = row["id:user"], following["id"]  # a history row follows its user row
            assert row["id"] == target and target not in following["ids"]
            assert set(following["ids"]) <= train_films[user]
            assert all(when[user, f] <= when[user, target] for f in following["ids"])
    assert sum("ids" in r for r in files["train"]) > 0.8 * len(user_rows["train"])

    # Titles: every film once, decoded from latin-1, genres as words; the catalog has them all.
    titles = {r["id"]: r["text"] for r in files["train"] if "text" in r}
    assert len(titles) == len(files["catalog"]) == len(data.film_ids)
    accented = [i for i, t in enumerate(data.film_titles) if "Château" in t or "Fiancée" in t]
    assert accented, "the generator should have made latin-1 titles"
    for film in accented:
        assert titles[f"m:{film}"].split(" | ")[0] == data.film_titles[film].split(" | ")[0]
    family = next(i for i, g in enumerate(data.film_genres) if "family" in g)
    assert "children" in titles[f"m:{family}"].split(" | ")[1].split()
    entry = files["catalog"][accented[0]]
    assert entry["key"] == entry["id"] == f"m:{accented[0]}" and entry["metadata"]["title"] in titles[entry["id"]]


def test_movielens_time_split_and_seeds(movielens, tmp_path):
    data, ratings, items = movielens
    files = run_import(ratings, items, tmp_path / "time", "--split", "time", "--test-fraction", "0.25")
    when = {(f"u:{u}", f"m:{f}"): t for u, f, t in zip(data.event_user, data.event_film, data.event_time)}
    times = {name: [when[r["id:user"], r["id"]] for r in files[name] if "id:user" in r] for name in ("train", "test")}
    assert max(times["train"]) < min(times["test"])
    assert abs(len(times["test"]) / len(data.event_film) - 0.25) < 0.01

    first = run_import(ratings, items, tmp_path / "a", "--seed", "7")["test"]
    assert run_import(ratings, items, tmp_path / "b", "--seed", "7")["test"] == first
    assert run_import(ratings, items, tmp_path / "c", "--seed", "8")["test"] != first


def test_movielens_history_of_all_other_films(movielens, tmp_path):
    _, ratings, items = movielens
    files = run_import(ratings, items, tmp_path, "--history", "all", "--max-history", "5", "--rating-weight")
    histories = [r for r in files["test"] if "ids" in r]
    assert histories and all(len(r["ids"]) <= 5 and r["id"] not in r["ids"] for r in histories)
    assert all(1 <= r["weight"] <= 5 for r in files["test"])


def test_movielens_default_history_caps_depend_on_the_history_mode(tmp_path):
    """Without --max-history: the 50 newest films for "earlier", up to 200 for "all"."""
    data = synthetic.generate(synthetic.SyntheticConfig(n_films=400, n_users=8, n_tastes=2, mean_history=280,
                                                        max_history=300, seed=2))
    ratings, items = synthetic.write_movielens(data, tmp_path / "raw")
    for mode, cap in (("earlier", 50), ("all", 200)):
        histories = [r["ids"] for r in run_import(ratings, items, tmp_path / mode, "--history", mode)["train"]
                     if "ids" in r]
        assert max(map(len, histories)) == cap, mode


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_movielens_files_give_one_line_errors(movielens, tmp_path):
    _, ratings, items = movielens
    out = str(tmp_path / "out")
    good = ratings.read_bytes().splitlines(keepends=True)
    missing_column = write_bytes(tmp_path / "short.data", b"".join(good[:2]) + b"3\t4\t5\n")
    assert_one_line_error(jointspace("import", "movielens", str(missing_column), "--items", str(items), "--out", out),
                          "short.data:3", "expected 4 tab-separated fields")
    utf16 = write_bytes(tmp_path / "u16.item", items.read_text(encoding="latin-1").encode("utf-16"))
    assert_one_line_error(jointspace("import", "movielens", str(ratings), "--items", str(utf16), "--out", out),
                          "u16.item:1", "NUL byte")
    empty = write_bytes(tmp_path / "empty.data", b"\n")
    assert_one_line_error(jointspace("import", "movielens", str(empty), "--items", str(items), "--out", out),
                          "empty.data", "empty")
    lines = items.read_bytes().splitlines(keepends=True)
    cut = write_bytes(tmp_path / "cut.item", b"".join(lines[:4]) + b"4|A Title (1999)|01-Jan-1999\n")
    assert_one_line_error(jointspace("import", "movielens", str(ratings), "--items", str(cut), "--out", out),
                          "cut.item:5", "expected 24 |-separated fields")
    unknown = write_bytes(tmp_path / "unknown.data", good[0] + b"1\t99999\t4\t881250949\n")
    assert_one_line_error(jointspace("import", "movielens", str(unknown), "--items", str(items), "--out", out),
                          "unknown.data:2", "'99999'")
    bad_rating = write_bytes(tmp_path / "rating.data", b"1\t2\tfive\t881250949\n")
    assert_one_line_error(jointspace("import", "movielens", str(bad_rating), "--items", str(items), "--out", out),
                          "rating.data:1", "rating 'five'")
    assert_one_line_error(jointspace("import", "movielens", str(ratings), "--items", str(items), "--out", out,
                                     "--test-fraction", "1.5"), "--test-fraction")
    assert not Path(out).exists()


@pytest.fixture()
def clip_folder(tmp_path: Path) -> Path:
    """Three speakers' clips of three digits, FSDD names, in a nested folder."""
    folder = tmp_path / "clips"
    (folder / "nested").mkdir(parents=True)
    for clip in fsdd.list_clips(fsdd.shipped_fsdd_dir()):
        if clip.speaker in ("george", "jackson", "theo") and clip.digit < 3 and clip.take < 2:
            shutil.copy(clip.path, folder / "nested" / clip.path.name)
    return folder


def test_audio_import_from_file_names_with_a_held_out_speaker(clip_folder, tmp_path):
    out = tmp_path / "out"
    result = jointspace("import", "audio", str(clip_folder / "nested"), "--out", str(out),
                        "--split", "group", "--group-by", "speaker", "--test-group", "theo")
    assert result.returncode == 0, result.stderr
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    assert len(train) == 12 and len(test) == 6
    assert all("_theo_" in r["audio"] for r in test) and not any("_theo_" in r["audio"] for r in train)
    for row in train + test:
        assert (out / row["audio"]).is_file()
        assert row["text"] == fsdd.DIGIT_WORDS[int(Path(row["audio"]).name[0])]
    catalog = read_jsonl(out / "catalog.jsonl")
    assert {r["key"] for r in catalog if "text" in r} == {"label:zero", "label:one", "label:two"}
    clip = next(r for r in catalog if r["key"] == "clip:0_theo_0")
    assert clip["metadata"] == {"label": "zero", "speaker": "theo", "take": "0", "split": "test"}


def test_audio_import_from_a_csv_with_random_split(clip_folder, tmp_path):
    files = sorted(p.relative_to(clip_folder).as_posix() for p in clip_folder.rglob("*.wav"))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,group\n" + "".join(f'{f},"digit {f.split("/")[1][0]}",g{i % 3}\n'
                                                      for i, f in enumerate(files)), encoding="utf-8")
    out = tmp_path / "out"
    result = jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", str(out),
                        "--test-fraction", "0.5", "--seed", "1")
    assert result.returncode == 0, result.stderr
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    assert len(train) == len(test) == 9
    assert {r["text"] for r in train + test} == {"digit 0", "digit 1", "digit 2"}
    grouped = tmp_path / "grouped"
    assert jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", str(grouped),
                      "--split", "group", "--test-fraction", "0.3").returncode == 0
    held = {r["metadata"]["group"] for r in read_jsonl(grouped / "catalog.jsonl")
            if r["metadata"].get("split") == "test"}
    assert len(held) == 1


def test_a_labels_csv_with_a_byte_order_mark_has_its_header_read(clip_folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,label\nnested/0_theo_0.wav,zero\nnested/1_theo_0.wav,one\n".encode("utf-8-sig"))
    out = tmp_path / "out"
    result = jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", str(out),
                        "--test-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out / "train.jsonl")) + len(read_jsonl(out / "test.jsonl")) == 2


def test_bad_audio_labels_give_one_line_errors(clip_folder, tmp_path):
    out = str(tmp_path / "out")
    labels = tmp_path / "labels.csv"
    labels.write_text("nested/0_theo_0.wav,zero\nnested/0_theo_1.wav\n")
    assert_one_line_error(jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", out),
                          "labels.csv:2", "path and label required")
    labels.write_text("nested/0_theo_0.wav,zero\nnested/missing.wav,one\n")
    assert_one_line_error(jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", out),
                          "labels.csv:2", "'nested/missing.wav' not found")
    assert_one_line_error(jointspace("import", "audio", str(tmp_path), "--out", out), "DIGIT_SPEAKER_TAKE")
    assert_one_line_error(jointspace("import", "audio", str(clip_folder / "nested"), "--out", out,
                                     "--split", "group", "--test-group", "nobody"), "nobody", "theo")
    assert_one_line_error(jointspace("import", "audio", str(clip_folder / "nested"), "--out", out,
                                     "--pattern", r"(?P<digit>\d)_.*"), "(?P<label>")


def test_splits():
    test = random_split(1000, 0.2, seed=3)
    assert test.sum() == 200 and (random_split(1000, 0.2, seed=3) == test).all()
    times = np.array([5, 1, 3, 3, 9, 7, 2, 8, 6, 4])
    late = time_split(times, 0.3)
    assert set(times[late]) == {7, 8, 9}
    groups = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    held = group_split(groups, 0.25, seed=0)
    assert 0.2 <= held.mean() < 1.0 and len(set(np.asarray(groups)[held])) < 3
    assert group_split(groups, 0.5, 0, held_out=["c"]).sum() == 20
    with pytest.raises(InvalidInput, match="at least one group"):
        group_split(groups, 0.5, 0, held_out=["a", "b", "c"])
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        random_split(10, 0.0, 0)


def test_audio_files_that_would_share_a_catalog_key_are_refused(clip_folder, tmp_path):
    nested = clip_folder / "nested"
    shutil.copy(nested / "0_theo_0.wav", nested / "0_theo_0.flac")
    out = tmp_path / "out"
    assert_one_line_error(jointspace("import", "audio", str(clip_folder), "--out", str(out), "--pattern",
                                     r"(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<take>\d+)"),
                          "0_theo_0.flac", "0_theo_0.wav", "clip:nested/0_theo_0")
    assert not out.exists()


def test_a_clip_labelled_twice_is_refused(clip_folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("nested/0_theo_0.wav,zero\nnested/1_theo_0.wav,one\n./nested/0_theo_0.wav,nought\n")
    out = tmp_path / "out"
    assert_one_line_error(jointspace("import", "audio", str(clip_folder), "--labels", str(labels), "--out", str(out)),
                          "labels.csv:3", "line 1")
    assert not out.exists()


def test_fsdd_clips_that_would_share_a_catalog_key_are_refused(clip_folder, tmp_path):
    nested = clip_folder / "nested"
    (nested / "recordings").mkdir()
    shutil.copy(nested / "1_theo_0.wav", nested / "recordings" / "0_theo_0.wav")
    out = tmp_path / "out"
    assert_one_line_error(jointspace("data", "fsdd", "--source", str(nested), "--out", str(out)), "0_theo_0")
    assert not out.exists()
