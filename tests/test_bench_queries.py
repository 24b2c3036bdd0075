"""`jointspace bench queries` on the shared tiny model: every modality the model answers is sent
through a real server as the real kind of input (audio as file bytes), timed as Search without
errors, and split into the server's stages and the wire."""

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


def test_every_modality_is_timed_and_split_into_stages(built) -> None:
    report = queries.run(built.model, built.index, [built.root / "audio-pairs.jsonl",
                                                    built.root / "film-pairs.jsonl"],
                         seconds=0.3, concurrency=(1,), batching=("on",))
    rows = {row["modality"]: row for row in report["rows"]}
    assert set(rows) == {"audio", "id", "ids", "text", "vector"} and len(report["rows"]) == 5
    for modality, row in rows.items():
        assert row["errors"] == 0 and row["calls"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["server_cpu_us_per_query"] > 0
        shares = row["shares"]
        # Each part is a real, non-negative part of the call: decoding within encoding, encoding
        # and searching within the server's call, the server's call within what the client saw.
        assert all(share >= 0 for share in shares.values()), (modality, shares)
        assert shares["search"] > 0 and shares["encode"] > 0
        assert (shares["decode"] > 0) == (modality == "audio"), (modality, shares)
        assert abs(sum(shares.values()) - 1) < 0.01
    table = queries.format_table(report)
    assert "audio" in table and "p99 ms" in table and "decode" in table
