"""The `Store` contract: the memory store and the LMDB store pass it with identical expectations."""

from __future__ import annotations

import re
from typing import Any

import pytest

from smithers.errors import (
    AlreadyDecidedError,
    AlreadyDeliveredError,
    GateNotRequestedError,
    InputError,
    LeaseLostError,
    RunLockedError,
    RunNotFoundError,
    SignalError,
)
from smithers.store import (
    ApprovalRecord,
    AttemptRecord,
    Batch,
    CommitResult,
    EventRecord,
    RunSnapshot,
    Store,
)
from smithers.store.records import GroupRecord, Lease
from tests.store.helpers import (
    T0,
    T1,
    T2,
    decision,
    dump,
    event,
    lease,
    node,
    requested,
    run_record,
    signal,
)

TERMINAL = ["finished", "failed", "cancelled"]


def seqs_and_types(store: Store, **query: Any) -> list[tuple[int, str, str]]:
    """The (seq, run_id, type) of each event ``store.events(**query)`` returns."""
    return [(e.seq, e.run_id, e.type) for e in store.events(**query)]


# -- create_run ------------------------------------------------------------------------------


def test_create_run_assigns_increasing_keys_and_indexes_the_status(store: Store) -> None:
    """Each new run gets the next internal key and is listed under its status, oldest first."""
    a = store.create_run(run_record("a"), Batch())
    b = store.create_run(run_record("b", status="waiting-signal"), Batch())
    c = store.create_run(run_record("c"), Batch())
    assert (a.key, b.key, c.key) == (1, 2, 3)
    assert a == run_record("a", key=1)
    assert store.get_run("b") == b
    assert store.get_run("d") is None
    assert store.runs() == [a, b, c]
    assert store.runs("running") == [a, c]
    assert store.runs("waiting-signal") == [b]
    assert store.runs("finished") == []


def test_create_run_applies_its_batch_with_it(store: Store) -> None:
    """The creating batch's events get the run's id, and its run updates decide the index."""
    created = store.create_run(
        run_record("r"),
        Batch(
            run={"status": "waiting-approval"},
            approvals=[requested("g")],
            events=[event("run.started", data={"workflow": "wf"}), event("run.waiting")],
        ),
    )
    assert created == run_record("r", status="waiting-approval", key=1)
    assert store.get_run("r") == created
    assert store.events() == [
        EventRecord(seq=1, type="run.started", run_id="r", at=T0, data={"workflow": "wf"}),
        EventRecord(seq=2, type="run.waiting", run_id="r", at=T0),
    ]
    assert store.runs("running") == []
    assert store.runs("waiting-approval") == [created]
    assert store.requested_gates() == [(created, requested("g"))]


def test_create_run_with_a_taken_id_raises_and_writes_nothing(store: Store) -> None:
    """A second run with the same id is refused with InputError; the store is unchanged."""
    first = store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    before = dump(store, ["r"])
    with pytest.raises(InputError, match=re.escape("Run id `r` is already taken in this store")):
        store.create_run(
            run_record("r", status="finished", workflow="other"),
            Batch(nodes=[node("t")], frames=[("f", b"x")], events=[event("run.started")]),
        )
    assert dump(store, ["r"]) == before
    assert store.frame("f") is None
    assert store.create_run(run_record("s"), Batch()).key == first.key + 1


# -- commit ---------------------------------------------------------------------------------


def test_commit_applies_every_kind_of_record(store: Store) -> None:
    """Nodes, groups, attempts, outputs, approvals, frames, events and run fields all land."""
    store.create_run(run_record("r"), Batch())
    attempt = AttemptRecord(
        node_id="t", number=1, started_at=T0, ended_at=T1, outcome="ok", duration_ms=1.5
    )
    group = GroupRecord(kind="loop", key="L", loop_iteration=2, loop_state="running")
    result = store.commit(
        "r",
        Batch(
            run={"status": "waiting-approval", "frame": "f1", "updated_at": T1},
            nodes=[
                node("t", state="finished"),
                node("g", kind="approval", state="waiting-approval"),
            ],
            groups=[group],
            attempts=[attempt],
            outputs=[("t", (), b"\x01")],
            approvals=[requested("g")],
            frames=[("f1", b"frame-bytes")],
            events=[event("node.finished", "t", ()), event("approval.requested", "g", ())],
        ),
        token=None,
    )
    run = run_record("r", key=1, status="waiting-approval", frame="f1", updated_at=T1)
    assert result == CommitResult(applied=True, run=run, seqs=(1, 2))
    assert store.get_run("r") == run
    assert store.load("r") == RunSnapshot(
        run=run,
        nodes={
            ("t", ()): node("t", state="finished"),
            ("g", ()): node("g", kind="approval", state="waiting-approval"),
        },
        groups={("loop", "L", ()): group},
        outputs={("t", ()): b"\x01"},
        approvals={("g", ()): requested("g")},
        signals={},
    )
    assert store.attempts("r") == [attempt]
    assert store.approvals("r") == [requested("g")]
    assert store.signals("r") == []
    assert store.output("r", "t", ()) == b"\x01"
    assert store.output("r", "t", (1,)) is None
    assert store.output("nope", "t", ()) is None
    assert store.frame("f1") == b"frame-bytes"
    assert store.frame("f2") is None
    assert seqs_and_types(store) == [(1, "r", "node.finished"), (2, "r", "approval.requested")]


def test_a_commit_that_fails_half_way_writes_nothing(store: Store) -> None:
    """A batch failing after its nodes and outputs were put leaves none of them behind."""
    store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    before = dump(store, ["r"])
    unencodable = requested("g", request={"title": object()})
    with pytest.raises(TypeError, match="Encoding objects of type object is unsupported"):
        store.commit(
            "r",
            Batch(
                run={"status": "finished"},
                nodes=[node("t", state="finished")],
                groups=[GroupRecord(kind="skip", key="s")],
                attempts=[AttemptRecord(node_id="t", number=1, started_at=T0)],
                outputs=[("t", (), b"\x01")],
                approvals=[requested("ok"), unencodable],
                frames=[("f", b"x")],
                events=[event("run.finished")],
            ),
            token=None,
        )
    assert dump(store, ["r"]) == before
    assert store.frame("f") is None
    assert store.commit("r", Batch(events=[event("run.resumed")]), token=None).seqs == (2,)


def test_run_updates_apply_to_the_record_read_inside_the_transaction(store: Store) -> None:
    """An owner's update keeps an inbox bump that landed after the owner last read the run."""
    store.create_run(run_record("r", lease=lease()), Batch(approvals=[requested("g")]))
    stale = store.get_run("r")
    assert stale is not None
    assert stale.inbox == 0
    store.decide("r", decision("g"))
    store.commit("r", Batch(bump_inbox=True), token=None)
    result = store.commit(
        "r", Batch(run={"status": "waiting-approval", "updated_at": T2}), token="tok-a"
    )
    assert result.run.inbox == 2
    assert result.run.status == "waiting-approval"
    assert store.get_run("r") == result.run


def test_a_status_change_moves_the_run_between_status_indexes(store: Store) -> None:
    """After each status change the run is listed under its new status only."""
    store.create_run(run_record("a"), Batch())
    store.create_run(run_record("b"), Batch())

    def listed() -> dict[str, list[tuple[str, str]]]:
        return {
            status: [(r.run_id, r.updated_at) for r in store.runs(status)]
            for status in ("running", "waiting-approval", "finished")
        }

    store.commit("a", Batch(run={"status": "waiting-approval", "updated_at": T1}), token=None)
    assert listed() == {"running": [("b", T0)], "waiting-approval": [("a", T1)], "finished": []}
    store.commit("b", Batch(run={"status": "finished", "updated_at": T1}), token=None)
    store.commit("a", Batch(run={"status": "finished", "updated_at": T2}), token=None)
    assert listed() == {"running": [], "waiting-approval": [], "finished": [("a", T2), ("b", T1)]}
    store.commit("b", Batch(run={"status": "finished", "updated_at": T2}), token=None)
    assert listed()["finished"] == [("a", T2), ("b", T2)]


def test_an_expect_inbox_mismatch_applies_nothing(store: Store) -> None:
    """Parking with a stale inbox returns applied=False and writes no event, node or run field."""
    store.create_run(
        run_record("r", lease=lease()),
        Batch(approvals=[requested("g")], events=[event("run.started")]),
    )
    store.decide("r", decision("g"))
    before = dump(store, ["r"])
    parking = Batch(
        run={"status": "waiting-approval", "updated_at": T2},
        nodes=[node("t", state="finished")],
        outputs=[("t", (), b"\x01")],
        approvals=[requested("g2")],
        frames=[("f", b"x")],
        events=[event("run.waiting")],
        release_lease=True,
        bump_inbox=True,
        expect_inbox=0,
    )
    result = store.commit("r", parking, token="tok-a")
    assert result == CommitResult(applied=False, run=before["runs_by_id"]["r"], seqs=())
    assert dump(store, ["r"]) == before
    assert store.frame("f") is None

    parking.expect_inbox = 1
    result = store.commit("r", parking, token="tok-a")
    assert result.applied
    assert result.seqs == (3,)
    assert (result.run.status, result.run.lease, result.run.inbox) == ("waiting-approval", None, 2)


def test_release_lease_and_bump_inbox(store: Store) -> None:
    """``bump_inbox`` adds one to the inbox; ``release_lease`` clears the lease, nothing else."""
    store.create_run(run_record("r", lease=lease(), inbox=4), Batch())
    bumped = store.commit("r", Batch(bump_inbox=True), token=None).run
    assert (bumped.inbox, bumped.lease) == (5, lease())
    released = store.commit("r", Batch(release_lease=True), token="tok-a").run
    assert released == run_record("r", key=1, inbox=5)
    assert store.get_run("r") == released


@pytest.mark.parametrize(
    ("holder", "owner"),
    [(lease("tok-b", pid=99, host="box-b"), "pid 99 on box-b"), (None, "nobody")],
)
def test_a_commit_without_the_lease_raises_and_writes_nothing(
    store: Store, holder: Lease | None, owner: str
) -> None:
    """With a token that is not the run's lease token, commit raises LeaseLostError, no writes."""
    store.create_run(run_record("r", lease=holder), Batch(events=[event("run.started")]))
    before = dump(store, ["r"])
    with pytest.raises(
        LeaseLostError,
        match=re.escape(f"Run `r` is no longer owned by this process (now {owner})"),
    ):
        store.commit(
            "r",
            Batch(
                run={"status": "finished"},
                nodes=[node("t")],
                events=[event("run.finished")],
                release_lease=True,
            ),
            token="tok-a",
        )
    assert dump(store, ["r"]) == before


def test_a_commit_with_the_current_token_or_none_applies(store: Store) -> None:
    """The lease holder's token passes the check, and ``token=None`` skips it."""
    store.create_run(run_record("r", lease=lease("tok-a")), Batch())
    assert store.commit("r", Batch(nodes=[node("t")]), token="tok-a").applied
    assert store.commit("r", Batch(nodes=[node("u")]), token=None).applied
    loaded = store.load("r")
    assert loaded is not None
    assert set(loaded.nodes) == {("t", ()), ("u", ())}


def test_commit_to_an_unknown_run_raises(store: Store) -> None:
    """Committing to a run id the store does not hold raises RunNotFoundError."""
    store.create_run(run_record("r"), Batch())
    with pytest.raises(RunNotFoundError, match=re.escape("No run `r2` in the store at")):
        store.commit("r2", Batch(events=[event("x")]), token=None)
    assert store.last_seq() == 0


# -- load ----------------------------------------------------------------------------------

RUN_IDS = ("r", "r1", "r1.0", "r10")
NODE_IDS = ("a", "ab", "a.b")
ITERATIONS: tuple[tuple[int, ...], ...] = ((), (1,), (1, 0), (2,))
CELLS = sorted((n, it) for n in NODE_IDS for it in ITERATIONS)


def fill(store: Store, run_id: str) -> None:
    """Create ``run_id`` with every kind of record at every (node, iteration) cell."""
    store.create_run(
        run_record(run_id),
        Batch(
            nodes=[node(n, it, reason=run_id) for n, it in CELLS],
            groups=[GroupRecord(kind="loop", key=n, iteration=it, gate=run_id) for n, it in CELLS],
            attempts=[
                AttemptRecord(node_id=n, iteration=it, number=1, started_at=T0, error=run_id)
                for n, it in CELLS
            ],
            outputs=[(n, it, f"{run_id}|{n}|{it}".encode()) for n, it in CELLS],
            approvals=[requested(n, it, request={"run": run_id}) for n, it in CELLS],
            events=[event("node.started", n, it, data={"run": run_id}) for n, it in CELLS],
        ),
    )
    for n, it in CELLS:
        store.deliver(run_id, signal(n, it, data=run_id.encode()))


def test_load_returns_one_runs_records_and_nothing_of_another(store: Store) -> None:
    """Runs whose ids are prefixes of each other, with nodes a/ab/a.b at nested iterations,
    each load exactly their own records."""
    for run_id in RUN_IDS:
        fill(store, run_id)
    for key, run_id in enumerate(RUN_IDS, start=1):
        loaded = store.load(run_id)
        assert loaded == RunSnapshot(
            run=run_record(run_id, key=key, inbox=len(CELLS), updated_at=T1),
            nodes={(n, it): node(n, it, reason=run_id) for n, it in CELLS},
            groups={
                ("loop", n, it): GroupRecord(kind="loop", key=n, iteration=it, gate=run_id)
                for n, it in CELLS
            },
            outputs={(n, it): f"{run_id}|{n}|{it}".encode() for n, it in CELLS},
            approvals={(n, it): requested(n, it, request={"run": run_id}) for n, it in CELLS},
            signals={(n, it): signal(n, it, data=run_id.encode()) for n, it in CELLS},
        ), run_id
        assert sorted((a.node_id, a.iteration, a.error) for a in store.attempts(run_id)) == [
            (n, it, run_id) for n, it in CELLS
        ]
        assert [(a.node_id, a.iteration) for a in store.approvals(run_id)] == CELLS
        assert [(s.node_id, s.iteration, s.data) for s in store.signals(run_id)] == [
            (n, it, run_id.encode()) for n, it in CELLS
        ]
        for n, it in CELLS:
            assert store.output(run_id, n, it) == f"{run_id}|{n}|{it}".encode()
        assert {e.run_id for e in store.events(run_id=run_id)} == {run_id}
        assert len(store.events(run_id=run_id)) == 2 * len(CELLS)


def test_attempts_are_listed_by_node_then_number(store: Store) -> None:
    """Attempts come back grouped by node, numbers in numeric order (10 after 2)."""
    attempts = [
        AttemptRecord(node_id=n, iteration=(3,), number=k, started_at=T0)
        for k in (10, 2, 1)
        for n in ("ab", "a.b", "a")
    ]
    store.create_run(run_record("r"), Batch(attempts=attempts))
    assert [(a.node_id, a.number) for a in store.attempts("r")] == [
        (n, k) for n in ("a", "a.b", "ab") for k in (1, 2, 10)
    ]


def test_reads_of_an_unknown_run_are_empty(store: Store) -> None:
    """An unknown run id (even a prefix of a stored one) loads as None and lists nothing."""
    fill(store, "r1")
    assert store.load("r") is None
    assert store.get_run("r") is None
    assert store.attempts("r") == []
    assert store.approvals("r") == []
    assert store.signals("r") == []
    assert store.events(run_id="r") == []
    assert store.output("r", "a", ()) is None


# -- events ---------------------------------------------------------------------------------


def test_the_event_sequence_is_gap_free_across_runs_and_commits(store: Store) -> None:
    """Every write's events get the next numbers in commit order, whatever the run."""
    store.create_run(run_record("a"), Batch(events=[event("run.started")]))
    store.create_run(
        run_record("b", lease=lease()),
        Batch(
            events=[event("run.started"), event("node.started", "x", ())],
            approvals=[requested("g")],
        ),
    )
    first = store.commit(
        "a",
        Batch(events=[event("node.started", "t", ()), event("node.finished", "t", ())]),
        token=None,
    )
    assert store.commit("b", Batch(nodes=[node("x")]), token=None).seqs == ()
    refused = store.commit("b", Batch(events=[event("run.waiting")], expect_inbox=7), token=None)
    assert refused.applied is False
    with pytest.raises(LeaseLostError, match="is no longer owned"):
        store.commit("b", Batch(events=[event("run.waiting")]), token="tok-z")
    store.decide("b", decision("g"))
    store.deliver("a", signal("s"))
    last = store.commit("b", Batch(events=[event("run.finished")]), token=None)
    assert seqs_and_types(store) == [
        (1, "a", "run.started"),
        (2, "b", "run.started"),
        (3, "b", "node.started"),
        (4, "a", "node.started"),
        (5, "a", "node.finished"),
        (6, "b", "approval.decided"),
        (7, "a", "signal.received"),
        (8, "b", "run.finished"),
    ]
    assert (first.seqs, last.seqs) == ((4, 5), (8,))
    assert store.last_seq() == 8
    assert store.events()[2] == EventRecord(
        seq=3, type="node.started", run_id="b", node_id="x", iteration=(), at=T0
    )


def test_an_empty_log(store: Store) -> None:
    """With no events, last_seq() is 0 and every events() query is empty."""
    assert store.last_seq() == 0
    assert store.events() == []
    store.create_run(run_record("r"), Batch())
    assert store.last_seq() == 0
    assert store.events(run_id="r") == []


def make_log(store: Store) -> None:
    """Runs ``a`` and ``ab`` with events interleaved: a=1,3,4,6  ab=2,5,7."""
    store.create_run(run_record("a"), Batch(events=[event("a1")]))
    store.create_run(run_record("ab"), Batch(events=[event("ab1")]))
    store.commit("a", Batch(events=[event("a2"), event("a3")]), token=None)
    store.commit("ab", Batch(events=[event("ab2")]), token=None)
    store.commit("a", Batch(events=[event("a4")]), token=None)
    store.commit("ab", Batch(events=[event("ab3")]), token=None)


def test_events_after_pages_through_the_log(store: Store) -> None:
    """Paging with after=<last seen seq> and a limit visits every event once, in order."""
    make_log(store)
    pages = []
    after = 0
    while page := store.events(after=after, limit=3):
        pages.append([e.seq for e in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    assert [e.seq for e in store.events(after=5)] == [6, 7]
    assert store.events(after=7) == []
    assert store.events(after=100) == []
    assert store.last_seq() == 7


def test_events_of_one_run_come_from_its_index_in_order(store: Store) -> None:
    """``events(run_id=...)`` returns that run's events only, in order, with after and limit."""
    make_log(store)
    assert seqs_and_types(store, run_id="a") == [
        (1, "a", "a1"),
        (3, "a", "a2"),
        (4, "a", "a3"),
        (6, "a", "a4"),
    ]
    assert seqs_and_types(store, run_id="ab") == [
        (2, "ab", "ab1"),
        (5, "ab", "ab2"),
        (7, "ab", "ab3"),
    ]
    assert [e.seq for e in store.events(run_id="a", after=3)] == [4, 6]
    assert [e.seq for e in store.events(run_id="a", after=1, limit=2)] == [3, 4]
    assert [e.seq for e in store.events(run_id="ab", after=5, limit=10)] == [7]
    assert store.events(run_id="ab", after=7) == []
    assert store.events(run_id="b") == []


def test_events_limit(store: Store) -> None:
    """``limit`` caps how many events come back, globally and per run; 0 returns none."""
    make_log(store)
    assert [e.seq for e in store.events(limit=1)] == [1]
    assert [e.seq for e in store.events(limit=100)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in store.events(run_id="ab", limit=2)] == [2, 5]
    assert store.events(limit=0) == []
    assert store.events(run_id="a", limit=0) == []


# -- frames ---------------------------------------------------------------------------------


def test_frames_are_deduplicated_by_hash(store: Store) -> None:
    """A second put of a digest keeps the first bytes, across commits and within one batch."""
    store.create_run(run_record("r"), Batch(frames=[("h1", b"first")]))
    store.commit("r", Batch(frames=[("h1", b"second"), ("h2", b"other")]), token=None)
    store.commit("r", Batch(frames=[("h3", b"x"), ("h3", b"y")]), token=None)
    assert store.frame("h1") == b"first"
    assert store.frame("h2") == b"other"
    assert store.frame("h3") == b"x"


# -- requested gates ------------------------------------------------------------------------


def test_requested_gates_lists_every_requested_gate_across_runs(store: Store) -> None:
    """Gates in status requested appear with their current run record; others do not."""
    denied = requested("old", status="denied", decided_by="bob", decided_at=T1)
    store.create_run(run_record("a"), Batch(approvals=[requested("g1"), requested("g2", (1,))]))
    store.create_run(run_record("b"), Batch(approvals=[requested("g1"), denied]))
    store.create_run(run_record("c"), Batch())
    b = store.commit("b", Batch(run={"status": "waiting-approval"}), token=None).run
    a = store.get_run("a")
    assert store.requested_gates() == [
        (a, requested("g1")),
        (a, requested("g2", (1,))),
        (b, requested("g1")),
    ]


def test_deciding_or_withdrawing_a_gate_removes_it_from_requested_gates(store: Store) -> None:
    """A decided or withdrawn gate leaves the index; requesting it again puts it back."""
    store.create_run(run_record("a"), Batch(approvals=[requested("g1"), requested("g2", (1,))]))
    store.create_run(run_record("b"), Batch(approvals=[requested("g1")]))
    store.decide("a", decision("g1"))
    withdrawn = requested("g2", (1,), status="withdrawn", withdrawn_at=T1, withdrawn_because="x")
    store.commit("a", Batch(approvals=[withdrawn]), token=None)
    assert [(r.run_id, g.node_id) for r, g in store.requested_gates()] == [("b", "g1")]
    store.commit("a", Batch(approvals=[requested("g2", (1,), requested_at=T2)]), token=None)
    assert [(r.run_id, g.node_id, g.requested_at) for r, g in store.requested_gates()] == [
        ("a", "g2", T2),
        ("b", "g1", T0),
    ]
    store.decide("b", decision("g1", approved=False))
    store.decide("a", decision("g2", (1,)))
    assert store.requested_gates() == []


# -- decide ---------------------------------------------------------------------------------


@pytest.mark.parametrize("approved", [True, False])
def test_decide_records_the_decision_and_tells_the_owner(store: Store, approved: bool) -> None:
    """A requested gate becomes approved/denied with the decision, an event and an inbox bump."""
    store.create_run(
        run_record("r", lease=lease()),
        Batch(approvals=[requested("g", (1, 0), request={"title": "Ship?"})]),
    )
    record, run = store.decide("r", decision("g", (1, 0), approved=approved, by="bob", note="n"))
    expected = ApprovalRecord(
        node_id="g",
        iteration=(1, 0),
        status="approved" if approved else "denied",
        request={"title": "Ship?"},
        requested_at=T0,
        decision={
            "approved": approved,
            "note": "n",
            "decided_by": "bob",
            "decided_at": T1,
            "votes": [{"by": "bob", "approved": approved, "note": "n", "at": T1}],
        },
        votes=({"by": "bob", "approved": approved, "note": "n", "at": T1},),
        decided_at=T1,
        decided_by="bob",
        recorded_by="ops",
        recorded_on="box-a",
    )
    assert record == expected
    assert store.approvals("r") == [expected]
    assert run == run_record("r", key=1, lease=lease(), inbox=1, updated_at=T1)
    assert store.get_run("r") == run
    assert store.events() == [
        EventRecord(
            seq=1,
            type="approval.decided",
            run_id="r",
            node_id="g",
            iteration=(1, 0),
            at=T1,
            data={"decision": expected.decision, "recorded_by": "ops", "recorded_on": "box-a"},
        )
    ]


def test_decide_on_an_unknown_run_raises_and_writes_nothing(store: Store) -> None:
    """Deciding in a run the store does not hold raises RunNotFoundError."""
    store.create_run(run_record("r"), Batch(approvals=[requested("g")]))
    before = dump(store, ["r"])
    with pytest.raises(RunNotFoundError, match=re.escape("No run `r2` in the store at")):
        store.decide("r2", decision("g"))
    assert dump(store, ["r"]) == before


@pytest.mark.parametrize(
    ("gate", "iteration", "where"),
    [("h", (), "`h`"), ("g", (2,), "`g` iteration 2"), ("g", (1, 0), "`g` iteration 1.0")],
)
def test_decide_on_a_gate_never_requested_raises_and_writes_nothing(
    store: Store, gate: str, iteration: tuple[int, ...], where: str
) -> None:
    """A gate with no request at that node and iteration raises GateNotRequestedError."""
    store.create_run(run_record("r"), Batch(approvals=[requested("g", (1,))]))
    before = dump(store, ["r"])
    with pytest.raises(
        GateNotRequestedError,
        match=re.escape(f"Gate {where} of run `r` has not been requested; decide it once"),
    ):
        store.decide("r", decision(gate, iteration))
    assert dump(store, ["r"]) == before


def test_decide_on_a_withdrawn_gate_raises_and_writes_nothing(store: Store) -> None:
    """A withdrawn gate raises GateNotRequestedError saying it was withdrawn."""
    withdrawn = requested("g", status="withdrawn", withdrawn_at=T1, withdrawn_because="unmounted")
    store.create_run(run_record("r"), Batch(approvals=[withdrawn]))
    before = dump(store, ["r"])
    with pytest.raises(
        GateNotRequestedError,
        match=re.escape("Gate `g` of run `r` has not been requested (it was withdrawn);"),
    ):
        store.decide("r", decision("g"))
    assert dump(store, ["r"]) == before


@pytest.mark.parametrize(
    ("approved", "by", "note", "said"),
    [
        (True, "alice", None, f"was already approved by alice at {T1}; a decision is final."),
        (False, "carol", "too risky", f"was already denied by carol at {T1} ('too risky');"),
        (True, None, None, f"was already approved by unknown at {T1};"),
    ],
)
def test_decide_on_a_decided_gate_names_who_what_when_and_writes_nothing(
    store: Store, approved: bool, by: str | None, note: str | None, said: str
) -> None:
    """A second decision raises AlreadyDecidedError naming the first decider, verdict and time."""
    store.create_run(run_record("r"), Batch(approvals=[requested("g")]))
    store.decide("r", decision("g", approved=approved, by=by, note=note, at=T1))
    before = dump(store, ["r"])
    for again in (True, False):
        with pytest.raises(AlreadyDecidedError, match=re.escape(f"Gate `g` of run `r` {said}")):
            store.decide("r", decision("g", approved=again, by="bob", at=T2))
    assert dump(store, ["r"]) == before


# -- deliver --------------------------------------------------------------------------------


def test_the_first_delivery_is_stored_announced_and_bumps_the_inbox(store: Store) -> None:
    """A signal's data is stored once with a ``signal.received`` event and an inbox bump."""
    store.create_run(run_record("r", status="waiting-signal"), Batch())
    run = store.deliver("r", signal("s", (2,), data=b"payload"))
    assert run == run_record("r", key=1, status="waiting-signal", inbox=1, updated_at=T1)
    assert store.get_run("r") == run
    assert store.signals("r") == [signal("s", (2,), data=b"payload")]
    assert store.events() == [
        EventRecord(
            seq=1,
            type="signal.received",
            run_id="r",
            node_id="s",
            iteration=(2,),
            at=T1,
            data={"recorded_by": "ops"},
        )
    ]
    store.deliver("r", signal("s", (3,), data=b"other"))
    assert [(s.iteration, s.data) for s in store.signals("r")] == [
        ((2,), b"payload"),
        ((3,), b"other"),
    ]


def test_a_second_delivery_is_refused_and_writes_nothing(store: Store) -> None:
    """Delivering to a signal that already holds data raises AlreadyDeliveredError."""
    store.create_run(run_record("r"), Batch())
    store.deliver("r", signal("s", (2,), data=b"first"))
    before = dump(store, ["r"])
    with pytest.raises(
        AlreadyDeliveredError,
        match=re.escape(f"Signal `s` iteration 2 of run `r` already received data at {T1};"),
    ):
        store.deliver("r", signal("s", (2,), data=b"second"))
    assert dump(store, ["r"]) == before


@pytest.mark.parametrize("status", TERMINAL)
def test_a_delivery_to_a_terminal_run_is_refused(store: Store, status: str) -> None:
    """A finished, failed or cancelled run refuses signals with SignalError, writing nothing."""
    store.create_run(run_record("r", status=status), Batch())
    before = dump(store, ["r"])
    with pytest.raises(SignalError, match=re.escape(f"Run `r` is {status}; signals can only")):
        store.deliver("r", signal("s"))
    assert dump(store, ["r"]) == before


def test_a_delivery_to_an_unknown_run_raises(store: Store) -> None:
    """Delivering to a run id the store does not hold raises RunNotFoundError."""
    with pytest.raises(RunNotFoundError, match=re.escape("No run `r` in the store at")):
        store.deliver("r", signal("s"))
    assert store.last_seq() == 0


# -- acquire --------------------------------------------------------------------------------


def test_acquire_takes_the_lease_with_the_next_epoch_and_applies_the_batch(store: Store) -> None:
    """A free run gets the lease with epoch + 1; the batch commits with it."""
    store.create_run(
        run_record("r", status="waiting-approval", epoch=3), Batch(events=[event("run.started")])
    )
    asked: list[Lease] = []

    def is_dead(owner: Lease) -> bool:
        asked.append(owner)
        return True

    got = store.acquire(
        "r",
        lease("tok-new", pid=7, epoch=0),
        is_dead=is_dead,
        batch=Batch(run={"status": "running"}, events=[event("run.resumed")]),
    )
    assert got == run_record("r", key=1, epoch=4, lease=lease("tok-new", pid=7, epoch=4))
    assert asked == []
    assert store.get_run("r") == got
    assert store.runs("running") == [got]
    assert store.runs("waiting-approval") == []
    assert seqs_and_types(store, run_id="r") == [(1, "r", "run.started"), (2, "r", "run.resumed")]
    assert store.commit("r", Batch(nodes=[node("t")]), token="tok-new").applied


def test_acquire_with_an_empty_batch_still_stores_the_lease(store: Store) -> None:
    """Taking a lease with nothing else to commit persists the lease and the epoch."""
    store.create_run(run_record("r"), Batch())
    got = store.acquire("r", lease("tok-new"), is_dead=lambda _: True, batch=Batch())
    assert got == run_record("r", key=1, epoch=1, lease=lease("tok-new", epoch=1))
    assert store.get_run("r") == got


def test_acquire_refuses_while_a_live_owner_holds_the_run(store: Store) -> None:
    """A live owner makes acquire raise RunLockedError naming its pid and host; no writes."""
    holder = lease("tok-old", pid=4242, host="box-a", epoch=1)
    store.create_run(run_record("r", lease=holder, epoch=1), Batch(events=[event("run.started")]))
    before = dump(store, ["r"])
    asked: list[Lease] = []

    def is_dead(owner: Lease) -> bool:
        asked.append(owner)
        return False

    with pytest.raises(
        RunLockedError,
        match=re.escape(f"Run `r` is being executed by pid 4242 on box-a (since {T0})"),
    ):
        store.acquire(
            "r",
            lease("tok-new"),
            is_dead=is_dead,
            batch=Batch(run={"status": "waiting-signal"}, nodes=[node("t")], events=[event("x")]),
        )
    assert asked == [holder]
    assert dump(store, ["r"]) == before


def test_acquire_takes_over_from_a_dead_owner(store: Store) -> None:
    """A dead owner's lease is replaced (epoch + 1) and its token stops passing commit."""
    holder = lease("tok-old", pid=4242, host="box-a", epoch=1)
    store.create_run(run_record("r", lease=holder, epoch=1), Batch())
    asked: list[Lease] = []

    def is_dead(owner: Lease) -> bool:
        asked.append(owner)
        return True

    got = store.acquire(
        "r", lease("tok-new", pid=7, host="box-b"), is_dead=is_dead, batch=Batch(nodes=[node("t")])
    )
    assert asked == [holder]
    assert got.lease == lease("tok-new", pid=7, host="box-b", epoch=2)
    assert got.epoch == 2
    loaded = store.load("r")
    assert loaded is not None
    assert list(loaded.nodes) == [("t", ())]
    with pytest.raises(LeaseLostError, match=re.escape("(now pid 7 on box-b)")):
        store.commit("r", Batch(nodes=[node("u")]), token="tok-old")


@pytest.mark.parametrize("status", TERMINAL)
def test_acquire_returns_a_terminal_run_unchanged(store: Store, status: str) -> None:
    """A finished, failed or cancelled run comes back as stored, and the batch is not applied."""
    stored = store.create_run(run_record("r", status=status, lease=lease(), epoch=1), Batch())
    before = dump(store, ["r"])
    got = store.acquire(
        "r",
        lease("tok-new"),
        is_dead=lambda _: True,
        batch=Batch(run={"status": "running"}, nodes=[node("t")], events=[event("run.resumed")]),
    )
    assert got == stored
    assert dump(store, ["r"]) == before


def test_acquire_of_an_unknown_run_raises(store: Store) -> None:
    """Acquiring a run id the store does not hold raises RunNotFoundError."""
    with pytest.raises(RunNotFoundError, match=re.escape("No run `r` in the store at")):
        store.acquire("r", lease(), is_dead=lambda _: True, batch=Batch(events=[event("x")]))
    assert store.last_seq() == 0
