"""What several command modules share: argument types that answer a bad value in one line, the
comma-separated lists some options take, and the exit status of a failed command."""

from __future__ import annotations

import argparse
import math

from jointspace.core.errors import InvalidInput
from jointspace.core.lexical_weight import check_lexical_weight

EXIT_ERROR = 1  # a command that failed, or found what it checks wanting (`bench soak`)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else positive(text)


def auto_or_positive(text: str) -> int | None:
    return None if text == "auto" else positive(text)


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def non_negative_number(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def lexical_weight(text: str) -> float:
    """A hybrid search's lexical weight: 0 (the vector side alone) to 1 (the words alone)."""
    try:
        return check_lexical_weight(number(text), "weight")
    except InvalidInput as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def lexical_weights(text: str) -> list[float]:
    """Comma-separated lexical weights."""
    weights = [lexical_weight(part) for part in text.split(",") if part.strip()]
    if not weights:
        raise argparse.ArgumentTypeError("expected comma-separated weights from 0 to 1")
    return weights


def held_out_share(text: str) -> float:
    """A share of rows held out: at least one row must be left to train on."""
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def epoch_share(text: str) -> float:
    """A share of a run's epochs, counted from its start: more than none, at most all."""
    value = number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def batch_size(text: str) -> int:
    """The in-batch softmax needs another row of the batch as a negative."""
    value = positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a row's negatives are the batch's other rows), "
                                         f"got {value}")
    return value


def recall(text: str) -> float:
    value = number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def positive_list(text: str, flag: str) -> list[int]:
    """`--dims 8,16,32`, `--clients 1,4`: read when the command runs, so `flag` names the option."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise InvalidInput(f"{flag}: expected positive numbers, got {text!r}")
    return values
