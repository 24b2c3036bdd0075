"""The lexical weight of a hybrid text search: its bounds and its default, shared by the server,
which checks it, and the clients and the command line, which offer the default.

0 answers from the vector index alone, 1 from the lexical index alone; between them the two
rankings are fused (server/index/fusion.py). The default is the weight that scored best on typed
queries (docs/benchmarks.md, "Typed text search").
"""

from __future__ import annotations

import math

from jointspace.core.errors import InvalidInput

DEFAULT_LEXICAL_WEIGHT = 0.8


def check_lexical_weight(weight: float, field: str = "lexical_weight") -> float:
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"{field}: must be a number from 0 to 1, got {weight:g}")
    return weight
