"""`jointspace bench queries` on the shared tiny model: every modality the model answers is sent
through a real server as the real kind of input (audio as file bytes), and timed as Embed and as
Search without errors."""

from __future__ import annotations

from jointspace.bench import queries
from jointspace.v1 import jointspace_pb2 as pb


def test_queries_of_every_answered_modality_come_from_the_pair_rows(built) -> None:
    requests = queries.query_requests([built.root / "audio-pairs.jsonl", built.root / "film-pairs.jsonl"],
                                      ["audio", "id", "ids", "text"], dim=16)
    assert set(requests) == {"audio", "id", "ids", "text", "vector"}
    audio = pb.Query.FromString(requests["audio"][0])
    assert audio.WhichOneof("kind") == "audio" and audio.audio.content[:4] == b"RIFF"
    assert pb.Query.FromString(requests["ids"][0]).WhichOneof("kind") == "ids"
    assert len(pb.Query.FromString(requests["vector"][0]).vector.f32) == 16 * 4
    assert all(len(set(found)) == len(found) for found in requests.values())  # distinct queries


def test_every_modality_is_timed_as_embed_and_search(built) -> None:
    report = queries.run(built.model, built.index, [built.root / "audio-pairs.jsonl",
                                                    built.root / "film-pairs.jsonl"], seconds=0.3, clients=(1,))
    assert set(report["modalities"]) == {"audio", "id", "ids", "text", "vector"}
    for measured in report["modalities"].values():
        assert set(measured) == {"embed_1_clients", "search_1_clients"}
        for result in measured.values():
            assert result["errors"] == 0 and result["calls"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    table = queries.format_table(report)
    assert "audio" in table and "search" in table and "p99 ms" in table
