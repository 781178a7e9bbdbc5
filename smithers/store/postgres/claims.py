"""Workers claiming due runs with ``FOR UPDATE SKIP LOCKED``, so that many workers on many
machines each take different runs instead of all resuming the same ones.

A claim is not a lease: it only hides the run from other workers' claims for ``hold_for``
seconds, long enough for the claiming worker to start ``smithers resume``, whose `acquire`
takes the lease as usual (and ends the claim: from then the lease decides). A worker that
dies after claiming delays the run by ``hold_for`` at most.

The run row's ``claimed_until`` column is what the queries below skip on; the claim record
in ``smithers_claims`` (owner, failures, backoff) is kept in step with it by `claim_run`,
`release_claim` and, when given an ``owner``, `claim_due_runs`. Locks are taken run row
first, claim record second, everywhere, so claimers never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smithers.store.base import DueRun, WakeReason, is_parked
from smithers.store.postgres.rows import RUN_COLUMNS, decode_run
from smithers.store.postgres.service import record_claim
from smithers.store.records import Lease

__all__ = ["claim_due_runs"]

_FREE = "(claimed_until IS NULL OR claimed_until <= %(now)s)"
_TERMINAL = "('finished', 'failed', 'cancelled')"
_QUERIES: tuple[tuple[WakeReason, str], ...] = (
    ("news", f"has_news AND {_FREE} ORDER BY key"),
    (
        "due",
        f"wake_at IS NOT NULL AND lease_token IS NULL AND status NOT IN {_TERMINAL} "
        f"AND wake_at <= %(now)s AND {_FREE} ORDER BY wake_at, key",
    ),
    (
        "owner-dead",
        f"lease_token IS NOT NULL AND status NOT IN {_TERMINAL} AND {_FREE} "
        "AND (%(judge)s OR heartbeat < %(silent)s) ORDER BY heartbeat, key",
    ),
    # An owner that let go of a running run (interrupted by a signal) is gone too.
    ("owner-dead", f"status = 'running' AND lease_token IS NULL AND {_FREE} ORDER BY key"),
)


def claim_due_runs(
    cur: Any,
    now: float,
    limit: int,
    *,
    hold_for: float,
    is_dead: Callable[[Lease], bool] | None,
    dead_after: float,
    owner: str | None = None,
) -> list[DueRun]:
    """Claim up to ``limit`` due runs no other worker holds a claim on, in `due_runs` order,
    then running runs nobody holds.

    Rows another transaction has locked (a run being committed, or claimed by a worker
    right now) are skipped, never waited for. With ``owner`` each claim is also recorded
    in ``smithers_claims`` (as `claim_run` records it), so that `release_claim` by that
    owner ends it or counts its failure.
    """
    found: list[DueRun] = []
    keys: list[int] = []
    params: dict[str, Any] = {
        "now": now,
        "silent": now - dead_after,
        "judge": is_dead is not None,
        "limit": limit,
    }
    for reason, where in _QUERIES:
        if len(found) >= limit:
            break
        judged = reason == "owner-dead" and is_dead is not None and "heartbeat" in where
        params["limit"] = None if judged else limit - len(found)
        cur.execute(
            f"SELECT {RUN_COLUMNS} FROM smithers_runs WHERE {where} "
            "LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
            params,
        )
        for key, raw, _ in cur.fetchall():
            run = decode_run(raw)
            if key in keys or len(found) >= limit:
                continue
            if reason == "news" and not is_parked(run):
                continue
            alive = is_dead is not None and run.lease is not None and not is_dead(run.lease)
            if judged and alive:
                continue
            keys.append(key)
            found.append(DueRun(run, reason))
    if keys:
        cur.execute(
            "UPDATE smithers_runs SET claimed_until = %s WHERE key = ANY(%s)",
            (now + hold_for, keys),
        )
        if owner is not None:
            for due in found:
                record_claim(cur, due.run.run_id, owner, now + hold_for)
    return found
