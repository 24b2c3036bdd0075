"""Train/test splits for importers: each function returns a boolean mask, True for test rows.

Three ways to hold data out, because they answer different questions: a random share of rows
(how well are known users' other ratings predicted), everything after a point in time (how well
is the future predicted from the past), and whole groups (does audio search work for a speaker
the model never heard).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jointspace.core.errors import InvalidInput


def check_fraction(fraction: float) -> float:
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"--test-fraction must be between 0 and 1 (exclusive), got {fraction}")
    return fraction


def random_split(count: int, fraction: float, seed: int) -> np.ndarray:
    """round(fraction × count) rows chosen uniformly with `seed`."""
    test = np.zeros(count, bool)
    test[np.random.default_rng(seed).permutation(count)[: round(check_fraction(fraction) * count)]] = True
    return test


def time_split(times: np.ndarray, fraction: float) -> np.ndarray:
    """The latest `fraction` of rows (by time; rows at the cut-off time go to test together, so
    nothing in training happens after anything in test)."""
    check_fraction(fraction)
    if not len(times):
        return np.zeros(0, bool)
    order = np.argsort(times, kind="stable")
    cut = times[order[min(len(times) - 1, int(round((1.0 - fraction) * len(times))))]]
    return np.asarray(times) >= cut


def group_split(groups: Sequence[str], fraction: float, seed: int,
                held_out: Sequence[str] = ()) -> np.ndarray:
    """Every row of the `held_out` groups, or, if none are named, of groups drawn in a seeded
    random order until at least `fraction` of the rows are held out (never all groups)."""
    values = np.asarray(groups, dtype=object)
    names = sorted(set(values.tolist()))
    if held_out:
        unknown = sorted(set(held_out) - set(names))
        if unknown:
            raise InvalidInput(f"--test-group {', '.join(unknown)}: no such group; groups: {', '.join(names)}")
        chosen = set(held_out)
    else:
        check_fraction(fraction)
        if len(names) < 2:
            raise InvalidInput(f"a group split needs at least two groups, found {len(names)}")
        chosen, held = set(), 0
        for name in np.random.default_rng(seed).permutation(names).tolist()[:-1]:
            if held >= fraction * len(values):
                break
            chosen.add(name)
            held += int((values == name).sum())
    if len(chosen) == len(names):
        raise InvalidInput("a group split must leave at least one group for training")
    return np.isin(values, list(chosen))
