"""The PostgreSQL store (DESIGN §15): the only package that imports ``psycopg``.

`open_postgres_store(url)` connects, creates the tables in an empty database (first use),
refuses a database at another schema version (`migrate_store` moves it, explicitly), and
returns a `PostgresStore`. Layout: `schema` (tables, versions, migrations), `connection`
(pool, transactions, errors), `rows` (records to rows, applying a batch), `events` (the
ordered log and LISTEN/NOTIFY), `reads`, `store`.
"""

from __future__ import annotations

import psycopg

from smithers.errors import StoreError
from smithers.store.postgres.connection import Pool, redacted
from smithers.store.postgres.schema import SCHEMA_VERSION, check_version, migrate, schema_version
from smithers.store.postgres.store import PostgresStore

__all__ = [
    "SCHEMA_VERSION",
    "PostgresStore",
    "migrate_store",
    "open_postgres_store",
    "redacted",
]


def open_postgres_store(url: str, *, create: bool = True) -> PostgresStore:
    """Open the smithers store in the PostgreSQL database at ``url``.

    Args:
        url: A ``postgresql://`` (or ``postgres://``) URL.
        create: Create the tables when the database holds none yet.

    Returns:
        The store.

    Raises:
        StoreError: When the server cannot be reached, the database holds no store and
            ``create`` is False, or its schema is older (run ``smithers store migrate``) or
            newer (upgrade smithers) than this smithers.
    """
    pool = Pool(url)
    try:
        with pool.connection() as conn, conn.cursor() as cursor:
            try:
                version = schema_version(cursor)
            except psycopg.Error as exc:
                raise pool.fault(exc, writing=False) from None
            check_version(version, pool.where)
            if version == 0 and create:
                migrate(conn, pool.where)
            elif version == 0:
                raise StoreError(
                    f"The PostgreSQL database at {pool.where} holds no smithers store; start a "
                    "run there first, or check the URL."
                )
            elif version < SCHEMA_VERSION:
                raise StoreError(
                    f"The PostgreSQL store at {pool.where} has schema version {version}, older "
                    f"than the {SCHEMA_VERSION} this smithers needs; run `smithers store "
                    "migrate` once, then try again."
                )
    except BaseException:
        pool.close()
        raise
    return PostgresStore(pool)


def migrate_store(url: str) -> tuple[int, int]:
    """Create or migrate the smithers tables in the database at ``url`` to `SCHEMA_VERSION`.

    Returns:
        The schema version before and after.

    Raises:
        StoreError: When the server cannot be reached or the schema is newer than this
            smithers knows.
    """
    pool = Pool(url)
    try:
        with pool.connection() as conn:
            try:
                return migrate(conn, pool.where)
            except StoreError:
                raise
            except psycopg.Error as exc:
                raise pool.fault(exc, writing=True) from None
    finally:
        pool.close()
