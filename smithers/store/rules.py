"""The pure rules every store backend applies inside its own write transaction to the
service's records: who may claim a run, what a released claim becomes, a group's members
after a change, and the refusal of a token name already taken. One copy, so LMDB and
PostgreSQL cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from smithers.errors import InputError
from smithers.store.records import WorkerClaim

__all__ = ["claim_released", "claim_taken", "group_members", "token_taken"]


def claim_taken(
    found: WorkerClaim | None, run_id: str, owner: str, now: float, until: float
) -> WorkerClaim | None:
    """``owner``'s claim on the run until ``until``, or None when another worker's claim (or a
    failed resume's backoff) still holds it at ``now``."""
    if found is not None and found.until > now and found.owner != owner:
        return None
    return msgspec.structs.replace(found or WorkerClaim(run_id=run_id), owner=owner, until=until)


def claim_released(
    found: WorkerClaim | None,
    run_id: str,
    failure: str | None,
    failed_at: str | None,
    retry_at: float | None,
) -> WorkerClaim | None:
    """What a released claim becomes: nothing after a success (None: delete it), else the
    failure counted and kept with its message, holding the run until ``retry_at``."""
    if failure is None:
        return None
    base = found or WorkerClaim(run_id=run_id)
    return msgspec.structs.replace(
        base,
        owner=None,
        until=retry_at or 0.0,
        failures=base.failures + 1,
        error=failure,
        failed_at=failed_at,
    )


def group_members(
    current: Iterable[str], add: Iterable[str], remove: Iterable[str]
) -> tuple[str, ...]:
    """A group's members after adding ``add`` and removing ``remove``, sorted (empty: the
    group is gone)."""
    return tuple(sorted((set(current) | set(add)) - set(remove)))


def token_taken(name: str) -> InputError:
    """The refusal of a second token named ``name``; nothing is written."""
    return InputError(
        f"A token named `{name}` already exists; pick another name, or revoke it first with "
        f"`smithers token revoke {name}`."
    )
