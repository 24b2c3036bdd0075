"""End-to-end latency of encoded queries: a query of each modality the model answers (ids,
histories, text, audio), sent to a real `jointspace serve`, measured as Embed (the encoder alone)
and as Search (encoder + index), with a raw vector query beside them (no encoder: the index
alone). The difference between a modality's Search and its Embed is what the index adds; the
difference from the vector row is what its encoder adds.

Queries come from pair rows (the views of each modality in them), so the measured inputs are
the real kind the model was trained on: audio clips go over the wire as their file bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jointspace.bench.load import run_load
from jointspace.bench.searchers import Target
from jointspace.bench.serve import SERVE, _servers
from jointspace.core.progress import log

K = 10
PER_MODALITY = 200  # distinct queries of each modality, cycled through by the clients


def query_requests(pair_files: Sequence[Path], modalities: Sequence[str], dim: int,
                   seed: int = 0) -> dict[str, list[bytes]]:
    """Serialized Query messages per modality the model answers, from the views in the pair
    files, plus random unit vectors under "vector"."""
    from jointspace.client import make_query
    from jointspace.data.pairs import modality_of, read_pairs

    rows = read_pairs(pair_files)
    values: dict[str, list[Any]] = {}
    for name, column in rows.views.items():
        modality = modality_of(name)
        if modality in modalities:
            values.setdefault(modality, []).extend(v for v in column if v is not None)
    rng = np.random.default_rng(seed)
    out: dict[str, list[bytes]] = {}
    for modality, found in sorted(values.items()):
        unique = list({repr(v): v for v in found}.values())
        chosen = [unique[i] for i in rng.permutation(len(unique))[:PER_MODALITY]]
        key = "audio_path" if modality == "audio" else modality
        out[modality] = [make_query(**{key: v}).SerializeToString() for v in chosen]
    vectors = rng.normal(size=(PER_MODALITY, dim)).astype(np.float32)
    out["vector"] = [make_query(vector=v).SerializeToString() for v in vectors]
    return out


def run(model: Path, index: Path, pair_files: Sequence[Path], seconds: float = 5.0,
        clients: Sequence[int] = (1, 4)) -> dict[str, Any]:
    """{modality: {"embed_<n>_clients": LoadResult dict, "search_<n>_clients": ...}}."""
    from jointspace.encoders.manifest import read_manifest

    manifest = read_manifest(model)
    requests = query_requests(pair_files, manifest.modalities, manifest.dim)
    report: dict[str, Any] = {"k": K, "seconds": seconds, "modalities": {}}
    with _servers((SERVE, ["--model", str(model), "--index", str(index)])) as (served,):
        for modality, queries in requests.items():
            units = np.array(queries, dtype=object)
            measured: dict[str, Any] = {}
            for count in clients:
                for method in ("embed", "search"):
                    target = Target("jointspace-requests", served.address, {"method": method})
                    result = run_load(target, units, K, count, seconds).as_dict()
                    measured[f"{method}_{count}_clients"] = result
                    log(f"{modality} {method} at {count} clients: {result}")
            report["modalities"][modality] = measured
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [f"end-to-end query latency over loopback, k = {report['k']}, {report['seconds']:g} s per measurement",
             "", f"{'query':8s} {'call':7s} {'clients':>7s} {'q/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}"]
    for modality, measured in report["modalities"].items():
        for name, result in measured.items():
            method, count = name.split("_")[0], result["clients"]
            lines.append(f"{modality:8s} {method:7s} {count:7d} {result['qps']:8,.0f} {result['p50_ms']:8.2f} "
                         f"{result['p99_ms']:8.2f} {result['errors']:6d}")
    return "\n".join(lines)
