"""Loop iterations as text and back: parse ``1.0``, print ``(1, 0)``, check range and depth.

An iteration is a tuple of loop positions, outermost loop first (``()`` outside loops). The
store keys each part as an unsigned 32-bit number, so every part is checked to fit before
anything reads or writes with it. Pure: no I/O.
"""

from __future__ import annotations

import re

from smithers.errors import InputError

__all__ = [
    "ITERATION_LIMIT",
    "check_iteration",
    "iteration_hint",
    "iteration_text",
    "parse_iteration",
]

ITERATION_LIMIT = 2**32
"""Every part of an iteration is below this (the store keys parts as u32)."""

_PART = re.compile(r"[0-9]+", re.ASCII)


def iteration_text(iteration: tuple[int, ...] | None) -> str:
    """An iteration in its CLI form: ``(1, 0)`` -> ``"1.0"``; ``()`` and None -> ``""``."""
    return ".".join(map(str, iteration)) if iteration else ""


def parse_iteration(text: str, *, option: str = "--iteration") -> tuple[int, ...]:
    """Parse a dot-separated iteration (``"1.0"`` -> ``(1, 0)``; ``""`` -> ``()``).

    Args:
        text: What the user typed.
        option: How the value is named in error messages.

    Returns:
        The iteration tuple, outermost loop first.

    Raises:
        InputError: For a negative or non-numeric part, or a part of 2**32 or more.
    """
    if text == "":
        return ()
    parts = text.split(".")
    if not all(_PART.fullmatch(part) for part in parts):
        raise InputError(f"{option} {text!r} is invalid; pass dot-separated numbers such as 1.0.")
    iteration = tuple(int(part) for part in parts)
    if any(part >= ITERATION_LIMIT for part in iteration):
        raise InputError(
            f"{option} {text!r} is out of range; each part must be below {ITERATION_LIMIT}."
        )
    return iteration


def iteration_hint(iteration: tuple[int, ...], depth: int) -> str:
    """How to name an iteration of a node inside ``depth`` loops, given a wrong ``iteration``.

    ``(1, 0)`` for a one-level loop gives ``"use --iteration 1"``; a node outside any loop
    gives ``"leave --iteration out"``.
    """
    if depth == 0:
        return "leave --iteration out"
    if len(iteration) > depth and not any(iteration[depth:]):
        return f"use --iteration {iteration_text(iteration[:depth])}"
    example = ".".join(["0"] * depth)
    parts = "part" if depth == 1 else "parts"
    return f"pass {depth} dot-separated {parts}, such as --iteration {example}"


def check_iteration(iteration: object, depth: int | None, where: str) -> tuple[int, ...]:
    """Check an iteration given from Python or the CLI before it reaches the store.

    Args:
        iteration: The iteration to check: a tuple (or list) of ints.
        depth: How many loops enclose the node, or None when that is not known.
        where: The node it is for, as a message names it (e.g. ``signal `payment` of run `r```).

    Returns:
        The iteration as a tuple.

    Raises:
        InputError: For parts that are not ints from 0 to 2**32 - 1, or a tuple whose length
            is not ``depth``.
    """
    if not isinstance(iteration, tuple | list) or not all(
        isinstance(part, int) and not isinstance(part, bool) for part in iteration
    ):
        raise InputError(
            f"Iteration {iteration!r} for {where} is invalid; pass a tuple of ints such as (1, 0)."
        )
    its = tuple(iteration)
    if any(part < 0 for part in its):
        raise InputError(
            f"Iteration {its!r} for {where} is invalid; iterations count from 0, such as (1, 0)."
        )
    if any(part >= ITERATION_LIMIT for part in its):
        raise InputError(
            f"Iteration {its!r} for {where} is out of range; each part must be below "
            f"{ITERATION_LIMIT}."
        )
    if depth is not None and len(its) != depth:
        inside = "outside any loop" if depth == 0 else f"inside {depth} loop(s)"
        raise InputError(
            f"Iteration {iteration_text(its) or '()'} does not fit {where}, which is {inside}; "
            f"{iteration_hint(its, depth)}."
        )
    return its
