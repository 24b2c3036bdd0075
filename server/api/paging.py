"""Paging of list calls (AIP-158): a page size with a default and a maximum, and an opaque token.

The token names the last item of the page it ended, so a page after it starts at the right place
even when newer items were added in between. A token naming an item no longer kept (the oldest are
dropped first) ends the list: everything after it is gone too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from jointspace.core.errors import InvalidInput

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1_000


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _name(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidInput("page_token: not a token this server gave; send next_page_token back as it came") from None


def page(items: Sequence[T], name_of: Callable[[T], str], page_size: int, page_token: str) -> tuple[list[T], str]:
    """One page of `items` (in their order) and the token of the next page ("" after the last)."""
    if page_size < 0:
        raise InvalidInput(f"page_size: must not be negative, got {page_size}")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if page_token:
        after = _name(page_token)
        names = [name_of(item) for item in items]
        start = names.index(after) + 1 if after in names else len(items)
    chosen = list(items[start : start + size])
    more = start + size < len(items)
    return chosen, _token(name_of(chosen[-1])) if more else ""
