"""`open_store(location)` picks the backend by the location's form; `Store.location` names it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smithers.errors import StoreError
from smithers.store import memory_store, open_store


def test_a_directory_opens_an_lmdb_store_located_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path opens an LMDB store whose location is the absolute directory."""
    monkeypatch.chdir(tmp_path)
    with open_store("store") as store:
        assert store.location == str(tmp_path / "store")
    assert (tmp_path / "store" / "data.mdb").is_file()


def test_an_in_memory_store_has_no_location() -> None:
    """The memory store lives nowhere: its location is None."""
    assert memory_store().location is None


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (
            "postgresql://ops:s3cret@127.0.0.1:1/smithers",
            "postgresql://ops:***@127.0.0.1:1/smithers",
        ),
        ("postgres://127.0.0.1:1/smithers", "postgres://127.0.0.1:1/smithers"),
    ],
)
def test_an_unreachable_postgresql_server_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str, shown: str
) -> None:
    """A PostgreSQL URL nobody answers is refused in one sentence (password hidden), and
    nothing is made."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as raised:
        open_store(location)
    message = str(raised.value)
    assert message.startswith(f"The PostgreSQL store at {shown} could not be reached (")
    assert message.endswith("); check that the server runs and the URL is right, then try again.")
    assert "s3cret" not in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_scheme_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL of a scheme no backend takes is refused, naming the scheme."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        StoreError, match=re.escape("The store location redis://cache/0 uses the unknown scheme")
    ):
        open_store("redis://cache/0")
    assert list(tmp_path.iterdir()) == []
