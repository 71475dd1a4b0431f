"""The databases an :class:`rqgmm.registry.IDRegistry` lives in: SQLite (embedded, the default)
and PostgreSQL (shared by many processes on many hosts), behind one small interface.

The registry writes portable SQL with ``?`` placeholders; a backend runs it and gives
transactions the isolation the registry's rules need:
- SQLite: ``BEGIN IMMEDIATE`` takes the write lock, so writers are serialized (WAL: readers are
  not blocked);
- PostgreSQL (psycopg 3: the reference driver, a thin layer over libpq, already what SQLAlchemy
  would use underneath; the registry's dozen statements need no ORM): READ COMMITTED
  transactions with transaction-scoped advisory locks where the rules need them — writers of
  one code prefix take turns (locks taken in sorted order: no deadlock between them), an assign
  holds a shared lock that a migration or retirement takes exclusively — so assigns under
  different prefixes run in parallel on many hosts and assigns under one prefix never pick the
  same suffix. A transaction that still collides (two hosts inserting one new item id, the first
  version registered twice, a deadlock) is re-run from the start (bounded, jittered back-off);
  the UNIQUE constraints back every rule up.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Callable, TypeVar

from rqgmm.errors import RqgmmError

T = TypeVar("T")
POSTGRES_SCHEMES = ("postgresql", "postgres")
MAX_ATTEMPTS = 30
_ITEMS_LOCK = 7310243  # advisory lock key: assigns (shared) against migrations and retirements


class RegistryError(RqgmmError, ValueError):
    """The registry is not ours, of a newer schema, or an operation would break its rules."""


def is_postgres(url: str | Path) -> bool:
    return str(url).split("://", 1)[0] in POSTGRES_SCHEMES and "://" in str(url)


def display_name(url: str | Path) -> str:
    """``url`` without a password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(url))


class SQLiteBackend:
    """A registry file. ``url``: a path or ``sqlite:///path``."""

    kind = "SQLite"
    autoincrement = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, url: str | Path, *, create: bool, timeout: float):
        self.path = self._path_of(url)
        self.name = str(self.path)
        self._timeout = timeout
        if not self.path.exists() and not create:
            raise RegistryError(f"{self.path}: no registry here (create one with `rqgmm registry init {self.path}`,"
                                " `registry assign`, or IDRegistry(..., create=True))")
        if self.path.exists() and not self.path.is_file():
            raise RegistryError(f"{self.path}: is not a file")
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.tables()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"{self.path}: not an SQLite database ({exc})") from None

    @staticmethod
    def _path_of(url: str | Path) -> Path:
        text = str(url)
        if "://" in text:  # SQLAlchemy-style: sqlite:///relative/path, sqlite:////absolute/path
            scheme, _, rest = text.partition("://")
            if scheme != "sqlite":
                raise RegistryError(f"{text}: a registry is a path, sqlite:///path or postgresql://...;"
                                    f" {scheme!r} is not supported")
            text = rest[1:]
        return Path(text)

    def execute(self, sql: str, params: tuple = ()):
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self._db.executemany(sql, rows)

    def lock_items(self, exclusive: bool) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the only write lock."""

    def lock_prefixes(self, prefixes: list[str]) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the only write lock."""

    def tables(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def write(self, work: Callable[["SQLiteBackend"], T]) -> T:
        """``work(self)`` in one write transaction, committed whole or rolled back."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise RegistryError(f"{self.path}: another process has held the registry's write lock for longer than"
                                f" the {self._timeout:g} s this call waits; try again when it is done") from None
        try:
            result = work(self)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result

    def integrity_problems(self) -> tuple[list[str], bool]:
        """(problems of the file itself, whether its tables can still be read)."""
        try:
            integrity = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # a page too damaged for the check itself
            return [f"SQLite integrity check failed: {exc}"], False
        return ([] if integrity == "ok" else [f"SQLite integrity check failed: {integrity}"]), True

    def close(self) -> None:
        self._db.close()


class PostgresBackend:
    """A registry in a PostgreSQL database: ``postgresql://user[:password]@host[:port]/db`` or
    ``postgresql:///db?host=/run/postgresql`` (a unix socket). The database must exist; the
    registry's tables are created in it with ``create=True``."""

    kind = "PostgreSQL"
    autoincrement = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, *, create: bool, timeout: float):
        try:
            import psycopg
        except ImportError:
            raise RegistryError(f"{display_name(url)}: a PostgreSQL registry needs psycopg 3"
                                " (pip install 'rqgmm[postgres]')") from None
        self._psycopg = psycopg
        self.path = None
        self.name = display_name(url)
        self._timeout = timeout
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
        except psycopg.Error as exc:
            raise RegistryError(f"{self.name}: cannot connect to the PostgreSQL registry"
                                f" ({str(exc).strip().splitlines()[0]})") from None
        if not create and not self.tables():
            raise RegistryError(f"{self.name}: no registry here (create one with `rqgmm registry init {self.name}`,"
                                " `registry assign`, or IDRegistry(..., create=True))")

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: tuple = ()):
        return self._db.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            with self._db.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)

    def lock_items(self, exclusive: bool) -> None:
        """Assigns share this lock; a migration or retirement takes it alone."""
        self._db.execute(f"SELECT pg_advisory_xact_lock{'' if exclusive else '_shared'}(%s)", (_ITEMS_LOCK,))

    def lock_prefixes(self, prefixes: list[str]) -> None:
        """One writer at a time per code prefix (sorted: two writers never wait on each other)."""
        if prefixes:
            self._db.execute("SELECT pg_advisory_xact_lock(2, hashtext(p)) FROM unnest(%s::text[]) AS p ORDER BY p",
                             (prefixes,))

    def tables(self) -> set[str]:
        return {row[0] for row in self._db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}

    def write(self, work: Callable[["PostgresBackend"], T]) -> T:
        """``work(self)`` in one transaction, re-run from the start when it collided with a
        concurrent writer (see the module text)."""
        errors = self._psycopg.errors
        retryable = (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self._db.transaction():
                    return work(self)
            except retryable as exc:
                if attempt + 1 == MAX_ATTEMPTS:
                    raise RegistryError(f"{self.name}: the transaction kept conflicting with concurrent writers"
                                        f" ({type(exc).__name__} {MAX_ATTEMPTS} times); try again") from None
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")

    def lock_schema(self) -> None:
        """Serialize schema creation across processes (inside a write transaction)."""
        self._db.execute("SELECT pg_advisory_xact_lock(7310242)")

    def integrity_problems(self) -> tuple[list[str], bool]:
        return [], True  # PostgreSQL checks its own pages (checksums, WAL); the registry checks its rules

    def close(self) -> None:
        self._db.close()


def open_backend(url: str | Path, *, create: bool, timeout: float):
    if is_postgres(url):
        return PostgresBackend(str(url), create=create, timeout=timeout)
    return SQLiteBackend(url, create=create, timeout=timeout)
