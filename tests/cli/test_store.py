"""``smithers store migrate`` and the CLI on a PostgreSQL store: same commands, same
documents, one ``Error:`` line when the server is away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smithers.store.postgres.schema import SCHEMA_VERSION
from tests.cli.helpers import EXAMPLES, invoke, one_error


def test_migrate_creates_the_tables_then_has_nothing_to_do(postgres_cluster: Any) -> None:
    """The first migrate creates the current schema; the second says there is nothing to do."""
    url = postgres_cluster.create_database("cli_migrate")
    first = invoke("store", "migrate", "--store", url)
    assert (first.code, first.err) == (0, "")
    assert first.out == (
        f"Migrated the store at {url} from schema version 0 to {SCHEMA_VERSION}.\n"
    )
    again = invoke("--json", "store", "migrate", "--store", url)
    assert again.json() == {
        "store": url,
        "version_before": SCHEMA_VERSION,
        "version": SCHEMA_VERSION,
    }


def test_migrate_on_an_lmdb_store_needs_nothing(tmp_path: Path) -> None:
    """An LMDB directory needs no migration, and migrate says so."""
    done = invoke("store", "migrate", "--store", str(tmp_path / "s"))
    assert done.code == 0
    assert done.out == f"The store at {tmp_path / 's'} is an LMDB store; it needs no migration.\n"


def test_an_unreachable_server_is_one_error_line_without_the_password() -> None:
    """A URL where no server listens: exit 4, one Error line, the password hidden."""
    url = "postgresql://ops:s3cret@127.0.0.1:1/smithers"
    for args in (("runs",), ("status", "r"), ("store", "migrate")):
        line = one_error(invoke("--store", url, *args))
        assert line.startswith(
            "Error: The PostgreSQL store at postgresql://ops:***@127.0.0.1:1/smithers could not "
            "be reached ("
        )
        assert "s3cret" not in line


def test_a_run_parks_and_is_approved_on_postgresql(
    postgres_cluster: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The deploy example parks (exit 3) and an approval finishes it, store given by
    $SMITHERS_STORE as a URL; `runs` and `approvals` read the same documents."""
    url = postgres_cluster.create_database("cli_deploy")
    monkeypatch.chdir(tmp_path)
    env: dict[str, str | None] = {"SMITHERS_STORE": url}
    parked = invoke("run", str(EXAMPLES / "deploy.py"), "--run-id", "d1", env=env)
    assert parked.code == 3, parked
    inbox = invoke("--json", "approvals", env=env).json()
    assert [(g["run_id"], g["node_id"]) for g in inbox] == [("d1", "approve-deploy")]
    done = invoke("approve", "d1", "--yes", "--by", "ann", env=env)
    assert done.code == 0, done
    runs = invoke("--json", "runs", env=env).json()
    assert [(r["run_id"], r["status"]) for r in runs] == [("d1", "finished")]


def test_printed_commands_never_carry_the_password(
    postgres_cluster: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A parked run's approve command names the store with its password as ***."""
    url = postgres_cluster.create_database("cli_secret")
    with_password = url.replace("smithers@", "smithers:s3cret@")
    monkeypatch.chdir(tmp_path)
    parked = invoke("--store", with_password, "run", str(EXAMPLES / "deploy.py"), "--run-id", "d")
    assert parked.code == 3, parked
    assert "s3cret" not in parked.out + parked.err
    shown = with_password.replace("s3cret", "***")
    assert f"smithers approve d --node approve-deploy --store '{shown}'" in parked.out
