"""A server confined to a data directory, for the tests that attack it from outside (issue 28):
a private copy of the session model, an index built from a catalog whose audio lies inside the
directory, metadata fields with odd names, and a folder beside the directory holding a real clip
that no request may reach."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from jointspace.client import Client, Operation, OperationState
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server

DIM = 16
ODD_FIELDS = {"back\\slash": "b", "é": "e", 'quo"te': "q", "tab\tbed": "t", "dot.ted": "d"}
# A status message never needs more than this; what a client sent is quoted by a short prefix.
MAX_DETAILS = 1_000
LONG_INPUT = 200
UNITS = np.eye(DIM, dtype=np.float32)


@dataclass
class Attacked:
    root: Path  # the data directory
    outside: Path  # a folder beside it
    engine: Any
    client: Client

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused request must leave as it was: the served value, the index info and
        the answer to a fixed query."""
        fixed = self.client.stub.Search(pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=UNITS[0])), k=10),
                                        timeout=30)
        return self.engine.served, self.client.info(), fixed.SerializeToString(deterministic=True)

    def assert_unchanged(self, before: tuple[Any, ...]) -> None:
        after = self.snapshot()
        assert after[0] is before[0], "a refused request changed what is served"
        assert after[1:] == before[1:], "a refused request changed the index info or a search"

    def assert_clean(self, message: str) -> None:
        """Bounded, without the data directory's place on the server, no long echo of input."""
        assert message, "an error needs a message"
        assert len(message) <= MAX_DETAILS, len(message)
        assert str(self.root) not in message, message
        assert not any(len(word) > LONG_INPUT for word in message.split()), message

    def refused(self, call: Callable[[], Any], codes: Sequence[grpc.StatusCode], *words: str) -> str:
        """The call's error message, after checking its code, its words and its cleanliness."""
        before = self.snapshot()
        try:
            answer = call()
        except grpc.RpcError as error:
            assert error.code() in codes, (error.code(), error.details()[:300])
            message = error.details()
        else:
            raise AssertionError(f"accepted: {str(answer)[:300]}")
        self.assert_clean(message)
        for word in words:
            assert word in message, (word, message)
        self.assert_unchanged(before)
        return message

    def rebuild(self, **request: Any) -> Operation:
        """A started rebuild, waited for."""
        operation = self.client.stub.RebuildIndex(pb.RebuildIndexRequest(**request), timeout=60)
        return self.client.wait(operation.name, poll=0.05)

    def failed_rebuild(self, codes: Sequence[grpc.StatusCode], *words: str, **request: Any) -> str:
        """A rebuild refused at the call or failed as an operation, with one of `codes`; nothing
        that is served changes. Returns the message."""
        before = self.snapshot()
        try:
            finished = self.rebuild(**request)
        except grpc.RpcError as error:
            assert error.code() in codes, (error.code(), error.details()[:300])
            code, message = error.code(), error.details()
        else:
            assert finished.state == OperationState.FAILED, finished
            code = finished.error.code
            message = finished.error.message
            assert code in codes, (code, message)
        self.assert_clean(message)
        for word in words:
            assert word in message, (word, message)
        self.assert_unchanged(before)
        return message


def write_catalog(root: Path, clips: Sequence[Any]) -> Path:
    """Clips copied into the data directory (paths relative to the catalog), digit words with
    odd metadata field names, and unit vectors."""
    (root / "clips").mkdir()
    rows: list[dict[str, Any]] = []
    for clip in clips:
        shutil.copy(clip.path, root / "clips" / clip.path.name)
        rows.append({"key": f"clip:{clip.path.stem}", "audio": f"clips/{clip.path.name}",
                     "metadata": {"digit": clip.digit}})
    for word in ("one", "two", "three"):
        rows.append({"key": f"word:{word}", "text": word, "metadata": {"digit": word, **ODD_FIELDS}})
    rows += [{"key": f"unit:{i}", "vector": UNITS[i].tolist(), "metadata": {"n": i}} for i in range(DIM)]
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return catalog


@contextlib.contextmanager
def attacked_server(built: Any, folder: Path, **engine_settings: Any) -> Iterator[Attacked]:
    from jointspace.encoders.inference import EncoderSet
    from jointspace.server.build.local_builder import build_generation
    from jointspace.server.index.data_dir import DataDir
    from jointspace.server.serving.engine import Engine

    root, outside = folder / "data", folder / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copytree(built.model, root / "model")
    clips = built.indexed_clips[:4]
    shutil.copy(clips[0].path, outside / "secret.wav")
    catalog = write_catalog(root, clips)
    build_generation(EncoderSet(root / "model"), [catalog], root / "index", "flat")
    engine = Engine(root / "model", root / "index", data_dir=DataDir(root), **engine_settings)
    with own_server(engine) as running, Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        yield Attacked(root, outside, engine, client)
