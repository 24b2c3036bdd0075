"""Request limits with safe defaults. One object travels from the server config to every place
that checks input, so a limit is defined once and named the same in every error message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jointspace.client.channel import DEFAULT_MAX_BATCH, DEFAULT_MAX_MESSAGE_BYTES
from jointspace.core.errors import InvalidInput, LimitExceeded


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_audio_seconds: float = 60.0
    # All clips of one request together: 1,024 clips of 60 s each would need ~4 GB of samples.
    max_request_audio_seconds: float = 600.0
    max_audio_sample_rate: int = 192_000
    max_audio_channels: int = 8
    # One clip's decode in its worker process (encoders/impl/decode_pool.py): a decoder that runs
    # away on hostile input is stopped after this long, or when its memory passes the second limit.
    max_audio_decode_seconds: float = 10.0
    max_audio_decode_mb: int = 1_024
    max_text_chars: int = 10_000
    max_k: int = 1_000
    max_batch: int = DEFAULT_MAX_BATCH
    max_ids: int = 10_000
    # Excluded keys deepen every FAISS search by their number, so they are bounded like a bag.
    max_exclude_keys: int = 10_000
    # One call's searches together: each costs its k plus its excluded keys (looked up, kept out
    # of the search, and every hit is a message to build). The other limits bound one query;
    # this bounds the call, e.g. 1,024 queries of k 256, or 26 queries with 10,000 exclusions.
    max_search_work: int = 262_144
    # Metadata filters of one query: each is a pass over the rows its values match.
    max_filters: int = 64
    # A catalog key or an entry's metadata comes back in every answer that finds it: without a
    # bound one entry could make every search that finds it bigger than any client accepts.
    max_key_bytes: int = 1_024  # UTF-8
    max_metadata_bytes: int = 64 * 1024  # as compact JSON in UTF-8

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInput(f"limits.{item.name}: must be a positive number, got {value!r}")
            if item.type == "int" and not isinstance(value, int):
                raise InvalidInput(f"limits.{item.name}: must be a whole number, got {value!r}")
        if self.max_message_bytes >= 2**31:  # gRPC takes it as a 32-bit option
            raise InvalidInput(f"limits.max_message_bytes: must be below 2 GiB, got {self.max_message_bytes}")

    def with_values(self, values: Mapping[str, Any], source: str = "limits") -> Limits:
        """A copy with some limits changed; unknown names are refused rather than ignored, so a
        typo in a config file cannot leave a limit at a value the operator did not mean."""
        known = {item.name: item.type for item in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidInput(f"{source}: unknown limit {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {}
        for name, value in values.items():
            if known[name] == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            converted[name] = value
        return replace(self, **converted)

    def check_k(self, k: int) -> None:
        if k <= 0:
            raise InvalidInput(f"k: must be at least 1, got {k}")
        if k > self.max_k:
            raise LimitExceeded(f"k: {k} is over the limit of {self.max_k}")

    def check_count(self, count: int, limit: str, field: str, what: str = "items") -> None:
        """LimitExceeded (RESOURCE_EXHAUSTED) naming the request field and the limit's name."""
        allowed = getattr(self, limit)
        if count > allowed:
            raise LimitExceeded(f"{field}: {count} {what}, over {limit} ({allowed})")

    def check_key(self, key: str, field: str) -> None:
        """InvalidInput unless `key` can be stored (UTF-8: no lone surrogate, which a JSON file
        can spell); LimitExceeded over max_key_bytes."""
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput(f"{field}: not valid Unicode text (a lone surrogate)") from None
        self.check_count(size, "max_key_bytes", field, "bytes")

    def check_metadata(self, metadata: Mapping[str, Any], field: str) -> None:
        """LimitExceeded when the metadata, as compact JSON, is over max_metadata_bytes."""
        if metadata:
            text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
            self.check_count(len(text.encode("utf-8", "surrogatepass")), "max_metadata_bytes", field, "bytes")

    def check_search_work(self, searches: Iterable[tuple[int, int]], field: str) -> None:
        """LimitExceeded when the (k, excluded keys) of a call's searches add up to more than
        max_search_work; a k under 1 counts as none (it is refused on its own)."""
        work = sum(max(k, 0) + excluded for k, excluded in searches)
        if work > self.max_search_work:
            raise LimitExceeded(f"{field}: {work:,} hits and excluded keys in one call, over max_search_work "
                                f"({self.max_search_work:,}); ask for fewer hits or split the call")


DEFAULT_LIMITS = Limits()


def parse_limit_assignment(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line (`serve --limit max_k=100`) to a typed pair."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidInput(f"--limit {text!r}: expected NAME=VALUE, e.g. max_k=100")
    try:
        value: Any = int(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"--limit {name}: {raw!r} is not a number") from None
    return name, value

