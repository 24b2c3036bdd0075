"""Search answers written in protobuf's wire format straight from FAISS's arrays.

A message per hit (`hits.add`) was the service's largest cost beside FAISS on a batch of vector
queries (docs/benchmarks.md, "Serving"). Here a whole batch's hits are laid out with array
operations: each field of every hit is a column block of one byte matrix (the hit's header, its
key's header, the key's UTF-8 bytes from `PackedKeys`, the score, the modality), with a mask of
the bytes that count in each row; the masked matrix read row by row is the hits' bytes.
protobuf parses the result into a message in C (`FromString`), so the servicer still returns
messages, and a client gets the same message that building it field by field gives.
"""

from __future__ import annotations

import numpy as np

from jointspace.server.index.packed_keys import PackedKeys
from jointspace.v1 import jointspace_pb2 as pb

LENGTH_DELIMITED, FIXED32 = 2, 5
MAX_CELLS = 1 << 20  # bytes in one matrix of hits (each also costs an int64 while it is masked)
HIT_OVERHEAD = 32  # a hit's bytes beside its key's: headers, score and a short modality name


def _tag(message: type, field: str, wire_type: int) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number << 3 | wire_type  # type: ignore[attr-defined]


HIT = _tag(pb.SearchResponse, "hits", LENGTH_DELIMITED)
GENERATION = _tag(pb.SearchResponse, "generation", LENGTH_DELIMITED)
KEY = _tag(pb.Hit, "key", LENGTH_DELIMITED)
SCORE = _tag(pb.Hit, "score", FIXED32)
MODALITY = _tag(pb.Hit, "modality", LENGTH_DELIMITED)
RESULT = _tag(pb.BatchSearchResponse, "results", LENGTH_DELIMITED)


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def ranked_results(rows: np.ndarray, scores: np.ndarray, keys: PackedKeys, modality: str, generation: str,
                   min_scores: np.ndarray | None = None) -> bytes:
    """A BatchSearchResponse with a SearchResponse per query row, serialized: the hits in `rows`
    (FAISS's row numbers, -1 where it found fewer than k) with their `scores`, best first,
    keeping those at or above the query's `min_scores` entry (None: all). Queries are written
    a slice at a time, so that the byte matrices stay under MAX_CELLS however long the keys."""
    step = max(1, MAX_CELLS // (rows.shape[1] * (keys.longest + HIT_OVERHEAD)))
    if len(rows) > step:
        return b"".join(ranked_results(rows[at:at + step], scores[at:at + step], keys, modality, generation,
                                       None if min_scores is None else min_scores[at:at + step])
                        for at in range(0, len(rows), step))
    kept = rows >= 0
    if min_scores is not None:
        kept &= scores >= min_scores[:, None]
    hits, hit_lengths = _hits(rows[kept], scores[kept], keys, modality)
    by_query = np.zeros(rows.shape, np.int64)
    by_query[kept] = hit_lengths
    per_query = by_query.sum(axis=1)
    generation_field = _repeated(length_delimited(GENERATION, generation.encode("utf-8")), len(rows))
    header = _headed_varints(RESULT, per_query + generation_field[0].shape[1])
    ends = np.cumsum(per_query)
    return _joined([header, (_slices(hits, ends - per_query, per_query), per_query), generation_field]).tobytes()


def _hits(found: np.ndarray, scores: np.ndarray, keys: PackedKeys, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """The `Hit` fields (tag, length, message) of these rows one after another, and each one's length."""
    key_lengths = keys.lengths(found)
    key_header = _headed_varints(KEY, key_lengths)
    score = (np.concatenate([np.full((len(found), 1), SCORE, np.uint8),
                             scores.astype("<f4").view(np.uint8).reshape(-1, 4)], axis=1), np.full(len(found), 5))
    modality_field = _repeated(length_delimited(MODALITY, modality.encode("utf-8")), len(found))
    body_lengths = key_header[1] + key_lengths + score[1] + modality_field[1]
    hit_header = _headed_varints(HIT, body_lengths)
    parts = [hit_header, key_header, (_slices(keys.buffer, keys.offsets[found], key_lengths), key_lengths), score,
             modality_field]
    return _joined(parts), hit_header[1] + body_lengths


Part = tuple[np.ndarray, np.ndarray]  # a matrix of bytes, and how many of each row's leading bytes count


def _joined(parts: list[Part]) -> np.ndarray:
    """Row 0's counted bytes of every part, in order, then row 1's, ..."""
    widths = [part.shape[1] for part, _ in parts]
    place = np.concatenate([np.arange(width) for width in widths])  # each column's place in its part
    lengths = np.stack([lengths for _, lengths in parts], axis=1)
    counted = place < lengths[:, np.repeat(np.arange(len(parts)), widths)]
    return np.concatenate([part for part, _ in parts], axis=1)[counted]


def _slices(source: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """source[start:start + length] per row, left-aligned in a matrix as wide as the longest."""
    width = int(lengths.max(initial=0))
    at = starts[:, None] + np.arange(width)
    return source[np.minimum(at, len(source) - 1)] if len(source) else np.zeros((len(starts), width), np.uint8)


def _repeated(value: bytes, rows: int) -> Part:
    return np.tile(np.frombuffer(value, np.uint8), (rows, 1)), np.full(rows, len(value))


def _headed_varints(tag: int, values: np.ndarray) -> Part:
    """Per value, `tag` then the value as a varint, as the rows of a matrix, and each row's
    length in bytes (the rest of a row is padding)."""
    widths = np.ones(len(values), np.int64)
    for shift in range(7, int(values.max(initial=0)).bit_length(), 7):
        widths += values >= 1 << shift
    out = np.zeros((len(values), 1 + int(widths.max(initial=1))), np.uint8)
    out[:, 0] = tag
    for place in range(out.shape[1] - 1):
        out[:, 1 + place] = (values >> 7 * place) & 0x7F | np.where(place < widths - 1, 0x80, 0)
    return out, widths + 1
