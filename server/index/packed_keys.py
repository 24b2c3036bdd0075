"""A modality's keys as one UTF-8 buffer with offsets, so that an answer can copy the keys of
the rows FAISS found with array operations instead of a Python string per hit (api/answer_bytes.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PackedKeys:
    buffer: np.ndarray  # uint8: every key's UTF-8 bytes, row after row
    offsets: np.ndarray  # int64, one more than there are rows: row i is buffer[offsets[i]:offsets[i + 1]]
    longest: int  # bytes

    @classmethod
    def of(cls, keys: np.ndarray) -> PackedKeys:
        encoded = [key.encode("utf-8") for key in keys.tolist()]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8), offsets, int(lengths.max(initial=0)))

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        return self.offsets[rows + 1] - self.offsets[rows]
