"""Held-out-speaker quality, measured the way a user would check it.

For each speaker: train on the other speakers' clips (audio ↔ digit word) with the CLI's
defaults, index the held-out speaker's clips beside the ten digit words, serve the index over
gRPC and ask (a) every held-out clip for its nearest text, (b) every digit word for its ten
nearest clips. A voice the model never heard is the honest test of an audio encoder.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jointspace.core.progress import log
from jointspace.data import fsdd


def evaluate_speaker(clips: list[fsdd.Clip], speaker: str, work: Path, epochs: int | None,
                     seed: int = 0, ensemble: int = 1) -> dict[str, Any]:
    from jointspace.client import Client, make_query
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.inference import EncoderSet
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train_members
    from jointspace.server.api.app import start_server
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.serving.engine import Engine

    train_clips, held_out = fsdd.split_by_speaker(clips, speaker)
    fsdd.write_pairs(train_clips, work / "pairs.jsonl")
    fsdd.write_catalog(held_out, work / "catalog.jsonl")
    started = time.monotonic()
    config = TrainConfig(epochs=epochs, seed=seed)
    export_model(train_members(read_pairs([work / "pairs.jsonl"]), config, ensemble), work / "model")
    train_seconds = time.monotonic() - started
    build_generation(EncoderSet(work / "model"), [work / "catalog.jsonl"], work / "index")
    running = start_server(Engine(work / "model", work / "index"), port=0)
    try:
        with Client(f"127.0.0.1:{running.port}") as client:
            queries = [make_query(audio_path=c.path) for c in held_out]
            found = []
            for start in range(0, len(queries), 64):
                found += client.batch_search(queries[start : start + 64], k=1, modalities=["text"])
            recall1 = sum(h[0].key == f"word:{c.word}" for h, c in zip(found, held_out)) / len(held_out)
            precision = []
            for digit, word in enumerate(fsdd.DIGIT_WORDS):
                hits = client.search(text=word, k=10, modalities=["audio"])
                precision.append(sum(h.metadata.get("digit") == digit for h in hits) / 10)
    finally:
        running.stop(grace=0.5)
    return {
        "speaker": speaker,
        "seed": seed,
        "ensemble": ensemble,
        "train_clips": len(train_clips),
        "test_clips": len(held_out),
        "audio_to_text_recall@1": round(recall1, 4),
        "text_to_audio_precision@10": round(sum(precision) / len(precision), 4),
        "train_seconds": round(train_seconds, 1),
    }


def run(source: Path | None, speakers: Sequence[str] | None, epochs: int | None,
        seeds: Sequence[int] | None = None, ensemble: int = 1) -> dict[str, Any]:
    """Every chosen speaker under every seed. Training is reproducible for a seed, so one seed is
    one draw of initial weights: the six-speaker mean moves between seeds (docs/benchmarks.md,
    "Held-out-speaker quality"), and several seeds say how far a figure can be trusted. None: seed 0 alone."""
    seeds = list(seeds or [0])
    clips = fsdd.list_clips(source or fsdd.shipped_fsdd_dir())
    chosen = list(speakers or sorted({c.speaker for c in clips}))
    results = []
    for seed in seeds:
        for speaker in chosen:
            with tempfile.TemporaryDirectory(prefix=f"jointspace-bench-{speaker}-") as work:
                result = evaluate_speaker(clips, speaker, Path(work), epochs, seed, ensemble)
            log(json.dumps(result))
            results.append(result)
    keys = ("audio_to_text_recall@1", "text_to_audio_precision@10")

    def mean(rows: list[dict[str, Any]]) -> dict[str, float]:
        return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in keys}

    report = {"clips": len(clips), "per_speaker": results, "mean": mean(results)}
    if len(seeds) > 1:
        report["mean_by_seed"] = {str(seed): mean([r for r in results if r["seed"] == seed]) for seed in seeds}
    return report
