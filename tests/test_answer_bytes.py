"""Search answers written in protobuf's wire format from arrays must parse into the very
messages that building them hit by hit gives."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.server.api import answer_bytes, convert
from jointspace.server.index.packed_keys import PackedKeys
from jointspace.server.index.searching import Ranked
from jointspace.v1 import jointspace_pb2 as pb


def _expected(keys, rows, scores, min_scores, modality, generation):
    answers = []
    for query_rows, query_scores, min_score in zip(rows, scores, min_scores):
        answer = pb.SearchResponse(generation=generation)
        for row, score in zip(query_rows, query_scores):
            if row >= 0 and score >= min_score:
                answer.hits.add(key=keys[row], score=score, modality=modality)
        answers.append(answer)
    return answers


@pytest.mark.parametrize("seed", range(4))
def test_answers_parse_into_the_messages_built_hit_by_hit(seed):
    """Keys of every length a varint of one, two or three bytes spells (UTF-8, not ASCII only),
    rows FAISS padded with -1, thresholds per query, a zero score (which protobuf itself leaves
    out) and a query with no hit at all."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 1, 60, 127, 128, 200, 16_383, 16_384, 20_000], 300)
    keys = np.asarray([f"é{i}" + "k" * int(n) for i, n in enumerate(lengths)], dtype=object)
    rows = rng.integers(0, len(keys), (6, 9))
    rows[1, 5:] = -1
    rows[4] = -1
    scores = -np.sort(-rng.normal(size=rows.shape).astype(np.float32), axis=1)
    scores[0, 3] = 0.0
    min_scores = np.array([-np.inf, 0.0, -np.inf, 0.5, -np.inf, -np.inf], np.float32)
    modality = "vector" if seed % 2 else "ïd" * 70  # a modality name over 127 bytes
    answer = answer_bytes.ranked_results(rows, scores, PackedKeys.of(keys), modality, "gen-000042", min_scores)
    expected = _expected(keys, rows, scores, min_scores, modality, "gen-000042")
    assert list(pb.BatchSearchResponse.FromString(answer).results) == expected


def test_both_ways_of_answering_give_the_same_messages():
    """`found_to_results` below and above WIRE_FROM_HITS: messages hit by hit (with and without a
    threshold, with and without -1 rows) and the arrays' bytes parse alike."""
    rng = np.random.default_rng(5)
    keys = np.asarray([f"k{i}" for i in range(500)], dtype=object)
    rows = rng.integers(0, 500, (60, 10))
    rows[1, 7:] = -1
    scores = -np.sort(-rng.random(rows.shape).astype(np.float32), axis=1)
    min_scores = [None, None, 0.5, *[None] * 57]
    found = Ranked("id", keys, PackedKeys.of(keys), rows, scores)
    expected = _expected(keys, rows, scores, [-np.inf if m is None else m for m in min_scores], "id", "g")
    assert rows.size >= convert.WIRE_FROM_HITS
    for answer in (convert.messages_to_results(found, min_scores, "g"),
                   convert.found_to_results(found, min_scores, "g")):
        assert list(pb.BatchSearchResponse.FromString(answer).results) == expected


def test_without_thresholds_every_found_row_is_a_hit():
    keys = np.asarray(["a", "b", "c"], dtype=object)
    rows, scores = np.array([[2, 0, -1]]), np.array([[0.9, 0.5, -3.4e38]], np.float32)
    answer = answer_bytes.ranked_results(rows, scores, PackedKeys.of(keys), "text", "g")
    assert list(pb.BatchSearchResponse.FromString(answer).results) == _expected(keys, rows, scores, [-np.inf],
                                                                                 "text", "g")


def test_varints_match_protobufs_own():
    for value in [1, 127, 128, 300, 16_383, 16_384, 2**21, 2**31 - 1]:  # count is an int32
        message = pb.EmbedResponse(vectors=b"")
        message.count = value
        field = pb.EmbedResponse.DESCRIPTOR.fields_by_name["count"].number << 3
        assert message.SerializeToString() == bytes([field]) + answer_bytes.varint(value)


def test_long_keys_are_written_a_slice_of_queries_at_a_time(monkeypatch):
    """The byte matrices are as wide as the longest key: a batch whose hits would pass
    MAX_CELLS is written in slices of queries, and reads the same."""
    rng = np.random.default_rng(9)
    keys = np.asarray(["x" * 1_000, *(f"k{i}" for i in range(99))], dtype=object)
    rows = rng.integers(0, 100, (40, 8))
    rows[:, 0] = 0
    scores = -np.sort(-rng.random(rows.shape).astype(np.float32), axis=1)
    min_scores = rng.random(40).astype(np.float32) / 2
    expected = _expected(keys, rows, scores, min_scores, "text", "g")
    monkeypatch.setattr(answer_bytes, "MAX_CELLS", 3 * 8 * (1_000 + answer_bytes.HIT_OVERHEAD))  # three queries a slice
    answer = answer_bytes.ranked_results(rows, scores, PackedKeys.of(keys), "text", "g", min_scores)
    assert list(pb.BatchSearchResponse.FromString(answer).results) == expected
