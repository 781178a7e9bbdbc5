"""Iterations as text and back: parsing, printing, range and depth checks, and hints."""

from __future__ import annotations

import pytest

from smithers.compiler.iterations import (
    check_iteration,
    iteration_hint,
    iteration_text,
    parse_iteration,
)
from smithers.errors import InputError


def test_parse_iteration_reads_dot_separated_parts() -> None:
    """``1.0`` is ``(1, 0)``, ``7`` is ``(7,)`` and the empty text is ``()``."""
    assert parse_iteration("1.0") == (1, 0)
    assert parse_iteration("7") == (7,)
    assert parse_iteration("") == ()
    assert parse_iteration(str(2**32 - 1)) == (2**32 - 1,)


@pytest.mark.parametrize("text", ["-1", "x", "1.", "1..2", " 1", "+1", "1_0", "1.0e3", "١"])
def test_parse_iteration_refuses_what_is_not_a_number_from_0(text: str) -> None:
    """Negative, non-numeric and oddly written parts are refused with the fix."""
    with pytest.raises(InputError, match=r"is invalid; pass dot-separated numbers such as 1\.0\."):
        parse_iteration(text)


def test_parse_iteration_refuses_a_part_the_store_cannot_key() -> None:
    """A part of 2**32 or more is refused by value, never reaching the store's u32 keys."""
    with pytest.raises(
        InputError,
        match=r"^--iteration '4294967296' is out of range; each part must be below 4294967296\.$",
    ):
        parse_iteration("4294967296")
    with pytest.raises(InputError, match=r"^--iteration '0.4294967296' is out of range"):
        parse_iteration("0.4294967296")


def test_iteration_text_is_the_cli_form() -> None:
    """``(1, 0)`` prints as ``1.0``; ``()`` and None print as nothing."""
    assert iteration_text((1, 0)) == "1.0"
    assert iteration_text(()) == ""
    assert iteration_text(None) == ""


def test_check_iteration_refuses_parts_out_of_range() -> None:
    """A tuple from Python with a part >= 2**32 or < 0 is refused, naming where it was for."""
    with pytest.raises(InputError, match=r"\(4294967296,\) for gate `g` is out of range"):
        check_iteration((2**32,), None, "gate `g`")
    with pytest.raises(InputError, match=r"\(-1,\) for gate `g` is invalid; iterations count"):
        check_iteration((-1,), None, "gate `g`")
    with pytest.raises(InputError, match=r"'1' for gate `g` is invalid; pass a tuple of ints"):
        check_iteration("1", None, "gate `g`")
    with pytest.raises(InputError, match=r"\(True,\) for gate `g` is invalid"):
        check_iteration((True,), None, "gate `g`")


def test_check_iteration_refuses_a_depth_that_does_not_match_the_loops() -> None:
    """The depth is the number of enclosing loops; the message says how to name one."""
    assert check_iteration([1, 0], 2, "x") == (1, 0)
    with pytest.raises(
        InputError,
        match=r"^Iteration 3 does not fit signal `s`, which is outside any loop; leave "
        r"--iteration out\.$",
    ):
        check_iteration((3,), 0, "signal `s`")
    with pytest.raises(
        InputError, match=r"Iteration 3.1 does not fit signal `s`, which is inside 1 loop\(s\)"
    ):
        check_iteration((3, 1), 1, "signal `s`")


def test_iteration_hint_suggests_the_iteration_meant() -> None:
    """``1.0`` on a one-level loop means ``1``; otherwise the hint shows the right shape."""
    assert iteration_hint((1, 0), 1) == "use --iteration 1"
    assert iteration_hint((1, 2), 1) == "pass 1 dot-separated part, such as --iteration 0"
    assert iteration_hint((1,), 2) == "pass 2 dot-separated parts, such as --iteration 0.0"
    assert iteration_hint((3,), 0) == "leave --iteration out"
