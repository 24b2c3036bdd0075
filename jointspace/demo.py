"""`jointspace demo`: the whole product path on the shipped data, in a few minutes.

Spoken digits of five speakers are paired with their digit words, synthetic watch histories with
the next film and film titles with film ids; one model learns all of it. The sixth speaker's
clips are indexed beside the digit words and the films, so the audio examples show what happens
with a voice the model never heard.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from jointspace.core.progress import log
from jointspace.data import fsdd, synthetic

HELD_OUT_SPEAKER = "theo"
DEMO_EPOCHS = 20
DEMO_DIM = 32  # three kinds of data share the space: more room than the rule's 8
DEMO_FILMS, DEMO_USERS = 1000, 3000


def prepare_data(out: Path) -> tuple[list[Path], list[Path], synthetic.SyntheticData, list[fsdd.Clip]]:
    out.mkdir(parents=True, exist_ok=True)
    clips = fsdd.list_clips(fsdd.shipped_fsdd_dir())
    train_clips, held_out = fsdd.split_by_speaker(clips, HELD_OUT_SPEAKER)
    fsdd.write_pairs(train_clips, out / "fsdd-pairs.jsonl")
    fsdd.write_catalog(held_out, out / "fsdd-catalog.jsonl")
    films = synthetic.generate(synthetic.SyntheticConfig(n_films=DEMO_FILMS, n_users=DEMO_USERS, seed=7))
    synthetic.write_pairs(films, out / "films-pairs.jsonl")
    synthetic.write_catalog(films, out / "films-catalog.jsonl")
    pairs = [out / "fsdd-pairs.jsonl", out / "films-pairs.jsonl"]
    catalogs = [out / "fsdd-catalog.jsonl", out / "films-catalog.jsonl"]
    return pairs, catalogs, films, held_out


def _show(title: str, hits: list[Any]) -> None:
    print(f"\n{title}")
    for rank, hit in enumerate(hits, 1):
        label = hit.metadata.get("title") or hit.metadata.get("word") or ""
        extra = "".join(f"  {k}={hit.metadata[k]}" for k in ("speaker", "taste") if k in hit.metadata)
        print(f"  {rank}. {hit.score:6.3f}  {hit.modality:5s}  {hit.key}  {label}{extra}")


def show_examples(target: str, films: synthetic.SyntheticData, held_out: list[fsdd.Clip]) -> None:
    from jointspace.client import Client

    with Client(target) as client:
        client.wait_ready()
        _show('text "seven" → audio clips of an unheard speaker',
              client.search(text="seven", k=5, modalities=["audio"]))
        clip = next(c for c in held_out if c.digit == 3)
        _show(f"audio {clip.path.name} (a spoken three) → text",
              client.search(audio_path=clip.path, k=3, modalities=["text"]))
        _show(f"audio {clip.path.name} → other clips", client.search(audio_path=clip.path, k=3,
              modalities=["audio"], exclude=[f"clip:{clip.path.stem}"]))
        user = 0
        history = [str(films.film_ids[f]) for f in films.events_of_user(user)[-10:]]
        taste = [int(films.film_taste[f]) for f in films.events_of_user(user)[-10:]]
        _show(f"watch history of {films.user_ids[user]} ({len(history)} films, hidden tastes "
              f"{sorted(set(taste))}) → films",
              client.search(ids=history, k=5, modalities=["id"], exclude=history))
        film = history[-1]
        title = films.film_titles[int(film.split(":")[1])]
        _show(f"film {film} ({title}) → similar films",
              client.search(id=film, k=5, modalities=["id"], exclude=[film]))
        print(f"\nindex: {json.dumps(dataclasses.asdict(client.info()))}")


def run_demo(out: Path, port: int = 50051, epochs: int | None = None, keep_serving: bool = False) -> None:
    from jointspace.data.pairs import read_pairs
    from jointspace.encoders.inference import EncoderSet
    from jointspace.encoders.training.config import TrainConfig
    from jointspace.encoders.training.export import export_model
    from jointspace.encoders.training.trainer import train
    from jointspace.server.api.app import serve_until_signal, start_server
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.serving.engine import Engine

    started = time.monotonic()
    pairs, catalogs, films, held_out = prepare_data(out)
    log(f"demo data in {out}: spoken digits (held-out speaker: {HELD_OUT_SPEAKER}), "
        f"{DEMO_FILMS} films, {DEMO_USERS} users")
    # Films in batches of 128 too: the spoken digits' steps are at least half the pair types' mean
    # (trainer._batch_counts), which larger film batches would halve in the demo's few epochs.
    config = TrainConfig(dim=DEMO_DIM, epochs=epochs or DEMO_EPOCHS, batch_size=128, catalog_batch_size=128)
    trained = train(read_pairs(pairs), config)
    export_model(trained, out / "model")
    build_generation(EncoderSet(out / "model"), catalogs, out / "index")
    running = start_server(Engine(out / "model", out / "index"), port=port)
    target = f"127.0.0.1:{running.port}"
    log(f"serving on {target} ({time.monotonic() - started:.0f}s since start)")
    try:
        show_examples(target, films, held_out)
        if keep_serving:
            log(f"still serving on {target}; try: jointspace query --target {target} --text seven "
                "--modality audio   (Ctrl-C to stop)")
            serve_until_signal(running)
            return
    finally:
        running.stop(grace=1.0)
