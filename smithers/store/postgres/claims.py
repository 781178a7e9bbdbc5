"""Workers claiming due runs with ``FOR UPDATE SKIP LOCKED``, so that many workers on many
machines each take different runs instead of all resuming the same ones.

A claim is not a lease: it only hides the run from other workers' claims for ``hold_for``
seconds, long enough for the claiming worker to start ``smithers resume``, whose `acquire`
takes the lease as usual. A worker that dies after claiming delays the run by ``hold_for``
at most.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smithers.store.base import DueRun, WakeReason, is_parked
from smithers.store.postgres.rows import RUN_COLUMNS, decode_run
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
)


def claim_due_runs(
    cur: Any,
    now: float,
    limit: int,
    *,
    hold_for: float,
    is_dead: Callable[[Lease], bool] | None,
    dead_after: float,
) -> list[DueRun]:
    """Claim up to ``limit`` due runs no other worker holds a claim on, in `due_runs` order.

    Rows another transaction has locked (a run being committed, or claimed by a worker
    right now) are skipped, never waited for.
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
        params["limit"] = limit - len(found) if reason != "owner-dead" or not is_dead else None
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
            if reason == "owner-dead" and is_dead is not None:
                assert run.lease is not None
                if not is_dead(run.lease):
                    continue
            keys.append(key)
            found.append(DueRun(run, reason))
    if keys:
        cur.execute(
            "UPDATE smithers_runs SET claimed_until = %s WHERE key = ANY(%s)",
            (now + hold_for, keys),
        )
    return found
