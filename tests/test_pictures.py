"""Pictures of the space: the PCA map as a PNG that decodes, and the Embedding Projector files with
matching rows, from the shared fixture's model and pair files."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.cli import main
from jointspace.data.fsdd import DIGIT_WORDS
from jointspace.quality.space_map import project_2d


def pair_files(built) -> list[str]:
    return [str(built.root / "audio-pairs.jsonl"), str(built.root / "film-pairs.jsonl")]


def test_pca_finds_the_direction_of_spread():
    rng = np.random.default_rng(0)
    along = rng.normal(size=(200, 1)) * np.array([[3.0, 0, 0, 4.0]]) / 5
    points, share = project_2d(along + rng.normal(scale=0.01, size=(200, 4)))
    assert share[0] > 0.99 and share[0] + share[1] <= 1.0
    assert abs(np.corrcoef(points[:, 0], along[:, 0])[0, 1]) > 0.999


def test_plot_writes_a_png_of_every_view(built, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "map.png"
    assert main(["plot", str(built.model), *pair_files(built), "--out", str(out), "--per-view", "150"]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: ")
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG" and image.size[0] > 500 and image.size[1] > 500
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn


def test_export_projector_files_line_up(built, tmp_path, capsys):
    out = tmp_path / "projector"
    assert main(["export-projector", str(built.model), *pair_files(built), "--out", str(out),
                 "--per-view", "60"]) == 0
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    metadata = [line.split("\t") for line in (out / "metadata.tsv").read_text(encoding="utf-8").splitlines()]
    assert metadata[0] == ["name", "view", "modality", "label"]
    assert vectors.shape == (len(metadata) - 1, 16)
    rows = metadata[1:]
    norms = np.linalg.norm(vectors, axis=1)
    ids = np.array([row[2] in ("id", "ids") for row in rows])
    assert np.allclose(norms[~ids], 1.0, atol=1e-4) and np.all(norms[ids] <= 1.0 + 1e-4)
    views = {row[1] for row in rows}
    assert views == {"audio", "text", "ids", "id"}
    assert all(sum(row[1] == view for row in rows) <= 60 for view in views)
    clips = [row for row in rows if row[1] == "audio"]
    assert clips and all(row[3] == DIGIT_WORDS[int(row[0][0])] for row in clips)  # "7_theo_3.wav": seven
    films = [row for row in rows if row[1] == "id"]
    assert all(row[0].startswith("m:") and " | " in row[3] for row in films)  # labelled by title
    config = (out / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "vectors.tsv"' in config and 'metadata_path: "metadata.tsv"' in config


def test_picture_errors_are_one_line(built, tmp_path, capsys):
    assert main(["plot", str(tmp_path), *pair_files(built), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a jointspace model" in err[0]
    with pytest.raises(SystemExit):
        main(["export-projector", str(built.model), *pair_files(built), "--out", str(tmp_path), "--per-view", "0"])
