"""The service's store records on every backend: tokens (one per name), the link key (made
once, rotatable) and worker claims (compare-and-set, failures kept with their backoff)."""

from __future__ import annotations

import pytest

from smithers.errors import InputError
from smithers.store import Store
from smithers.store.records import LinkKey, TokenRecord


def _token(name: str) -> TokenRecord:
    return TokenRecord(name=name, role="viewer", digest="ab" * 32, created_at="t")


def test_tokens_are_unique_by_name_and_revocable(store: Store) -> None:
    """A second token with a taken name is refused; revoking removes it once."""
    store.add_token(_token("ann"))
    with pytest.raises(InputError, match="A token named `ann` already exists"):
        store.add_token(_token("ann"))
    store.add_token(_token("bob"))
    assert [t.name for t in store.tokens()] == ["ann", "bob"]
    assert store.revoke_token("ann") is True
    assert store.revoke_token("ann") is False
    assert [t.name for t in store.tokens()] == ["bob"]


def test_the_link_key_is_made_once_and_rotated_on_request(store: Store) -> None:
    """link_key stores the first key offered, keeps it against later offers, and replaces it
    only when rotating."""
    first = LinkKey(key_id="k1", secret=b"1" * 32, created_at="t")
    second = LinkKey(key_id="k2", secret=b"2" * 32, created_at="t")
    assert store.link_key() is None
    assert store.link_key(first) == first
    assert store.link_key(second) == first
    assert store.link_key(second, rotate=True) == second
    assert store.link_key() == second


def test_claims_exclude_other_workers_until_they_lapse(store: Store) -> None:
    """A claim held by one worker refuses another until its time passes; the holder may
    renew it; a successful release clears it."""
    assert store.claim_run("r", "w1", now=100.0, until=130.0) is True
    assert store.claim_run("r", "w2", now=110.0, until=140.0) is False
    assert store.claim_run("r", "w1", now=110.0, until=140.0) is True
    assert store.claim_run("r", "w2", now=141.0, until=171.0) is True
    store.release_claim("r", "w1")  # no longer the holder: nothing changes
    claim = store.worker_claim("r")
    assert claim is not None
    assert claim.owner == "w2"
    store.release_claim("r", "w2")
    assert store.worker_claim("r") is None


def test_a_failed_release_keeps_the_failure_and_its_backoff(store: Store) -> None:
    """Releasing with a failure counts it, keeps the message and holds the run until the
    retry time for every worker; a later success clears the count."""
    assert store.claim_run("r", "w1", now=0.0, until=30.0)
    store.release_claim("r", "w1", failure="LoadError: gone", failed_at="t1", retry_at=5.0)
    claim = store.worker_claim("r")
    assert claim is not None
    assert (claim.owner, claim.failures, claim.error, claim.until) == (
        None,
        1,
        "LoadError: gone",
        5.0,
    )
    assert store.claim_run("r", "w1", now=4.0, until=34.0) is False
    assert store.claim_run("r", "w2", now=5.0, until=35.0) is True
    store.release_claim("r", "w2", failure="LoadError: gone", failed_at="t2", retry_at=15.0)
    claim = store.worker_claim("r")
    assert claim is not None
    assert claim.failures == 2
    assert store.claim_run("r", "w1", now=15.0, until=45.0) is True
    store.release_claim("r", "w1")
    assert store.worker_claim("r") is None
