"""`jointspace export-projector`: the shared space for TensorBoard's Embedding Projector.

Writes the three files the projector reads: `vectors.tsv` (one point per line, D tab-separated
floats), `metadata.tsv` (a header line, then name, view, modality and label per point, in the
same order) and `projector_config.pbtxt` tying them together. Point TensorBoard at the folder
(`tensorboard --logdir DIR`) or load the two TSVs at projector.tensorflow.org; TSV rather than a
checkpoint, so that no TensorFlow is needed to read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jointspace.quality.points import Points

VECTORS, METADATA, CONFIG = "vectors.tsv", "metadata.tsv", "projector_config.pbtxt"
COLUMNS = ("name", "view", "modality", "label")


def export_projector(points: Points, out: Path, tensor_name: str) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    matrix = points.matrix()
    np.savetxt(out / VECTORS, matrix, fmt="%.6g", delimiter="\t")
    with (out / METADATA).open("w", encoding="utf-8") as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        for row in zip(points.names, points.views, points.modalities, points.labels):
            handle.write("\t".join(row) + "\n")
    (out / CONFIG).write_text(
        "embeddings {\n"
        f'  tensor_name: "{tensor_name}"\n'
        f'  tensor_path: "{VECTORS}"\n'
        f'  metadata_path: "{METADATA}"\n'
        "}\n"
    )
    return {"points": len(points), "dim": int(matrix.shape[1])}
