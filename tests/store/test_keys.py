"""The binary key layout: keys sort like tuples and a run or a node is one prefix."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from smithers.store.kv.keys import (
    event_key,
    iteration_bytes,
    node_key,
    parse_event_key,
    run_key,
    status_key,
)
from smithers.store.kv.kvstore import _split_node_key

runs = st.integers(min_value=0, max_value=2**64 - 1)
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
iterations = st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=4).map(tuple)
small_iterations = st.lists(st.integers(min_value=0, max_value=3), max_size=3).map(tuple)
node_tuples = st.tuples(runs, names, iterations)


def test_layout_is_run_key_name_nul_then_u32_iterations() -> None:
    """A node key is the u64 run key, the UTF-8 name, a NUL and each iteration as a BE u32."""
    assert run_key(1) == b"\x00" * 7 + b"\x01"
    assert iteration_bytes(()) == b""
    assert iteration_bytes((1, 258)) == b"\x00\x00\x00\x01\x00\x00\x01\x02"
    assert node_key(run_key(2), "é/a", (3,)) == (
        b"\x00\x00\x00\x00\x00\x00\x00\x02" + "é/a".encode() + b"\x00" + b"\x00\x00\x00\x03"
    )
    assert status_key("waiting-approval", run_key(5)) == b"waiting-approval\x00" + run_key(5)


def test_fixed_cases_sort_like_tuples() -> None:
    """Ids that are prefixes of each other and nested iterations sort as their tuples do."""
    cases = [
        (1, "a", ()),
        (1, "a", (1,)),
        (1, "a", (1, 0)),
        (1, "a", (2,)),
        (1, "a.b", ()),
        (1, "a/b", ()),
        (1, "ab", ()),
        (1, "b", ()),
        (2, "a", ()),
        (256, "a", ()),
    ]
    shuffled = cases[::-1]
    by_key = sorted(shuffled, key=lambda c: node_key(run_key(c[0]), c[1], c[2]))
    assert by_key == cases


@given(st.lists(node_tuples, min_size=2, max_size=12))
def test_node_keys_sort_like_run_node_iteration_tuples(
    items: list[tuple[int, str, tuple[int, ...]]],
) -> None:
    """Sorting node keys orders them exactly as the (run, node_id, iteration) tuples."""
    by_key = sorted(items, key=lambda c: node_key(run_key(c[0]), c[1], c[2]))
    assert by_key == sorted(items)


@given(iterations, iterations)
def test_iteration_bytes_sort_like_tuples(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    """Comparing iteration bytes agrees with comparing the iteration tuples."""
    assert (iteration_bytes(a) < iteration_bytes(b)) == (a < b)
    assert (iteration_bytes(a) == iteration_bytes(b)) == (a == b)


@given(iterations)
def test_iteration_bytes_round_trip(iteration: tuple[int, ...]) -> None:
    """Iteration bytes are one BE u32 per level and decode back to the same tuple."""
    raw = iteration_bytes(iteration)
    assert len(raw) == 4 * len(iteration)
    assert struct.unpack(f">{len(iteration)}I", raw) == iteration


@given(runs, names, iterations)
def test_node_key_splits_back_into_name_and_iteration(
    run: int, name: str, iteration: tuple[int, ...]
) -> None:
    """The store recovers (node_id, iteration) from a node key with its run key stripped."""
    assert _split_node_key(node_key(run_key(run), name, iteration)) == (name, iteration)


@given(runs, runs, names, iterations)
def test_a_runs_keys_share_its_run_prefix_only(
    mine: int, other: int, name: str, iteration: tuple[int, ...]
) -> None:
    """Every key of a run starts with its run key; no key of another run does."""
    key = node_key(run_key(other), name, iteration)
    assert key.startswith(run_key(mine)) == (mine == other)


@given(names, names, small_iterations)
def test_a_nodes_prefix_matches_only_that_node(
    mine: str, other: str, iteration: tuple[int, ...]
) -> None:
    """The prefix of node ``mine`` (name + NUL) matches a key of ``other`` only when equal."""
    prefix = run_key(7) + mine.encode() + b"\x00"
    assert node_key(run_key(7), other, iteration).startswith(prefix) == (mine == other)


def test_node_a_prefix_never_matches_ab_or_a_slash_b() -> None:
    """Node ``a``'s prefix matches its own iterations but not ``ab``, ``a/b`` or ``a.b``."""
    rk = run_key(3)
    prefix = rk + b"a\x00"
    assert node_key(rk, "a", ()).startswith(prefix)
    assert node_key(rk, "a", (4, 2)).startswith(prefix)
    for other in ("ab", "a/b", "a.b", "b", ""):
        assert not node_key(rk, other, ()).startswith(prefix), other


@given(st.integers(min_value=0, max_value=2**64 - 1), runs)
def test_event_keys_round_trip_and_sort_by_seq(seq: int, run: int) -> None:
    """An event key decodes to its seq, also as the tail of a per-run index key."""
    assert parse_event_key(event_key(seq)) == seq
    assert parse_event_key(run_key(run) + event_key(seq)) == seq


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=2, max_size=10))
def test_event_keys_sort_like_integers(seqs: list[int]) -> None:
    """Event keys sort in sequence order, so a cursor walks the log oldest first."""
    assert sorted(seqs, key=event_key) == sorted(seqs)
