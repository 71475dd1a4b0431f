"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries, a cluster in a
temporary directory, listening on a unix socket there only (no TCP port, nothing reachable from
outside the machine).

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
and the server commands run through ``runuser -u postgres --``.

    with PostgresServer() as server:
        url = server.create_database("registry")   # postgresql://postgres@/registry?host=...
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` / ``pg_ctl`` (Debian: /usr/lib/postgresql/<major>/bin),
    or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """A running server; ``stop()`` (or leaving the ``with`` block) removes it and its data."""

    def __init__(self, user: str = "postgres"):
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
        self.binaries = binaries
        self.as_root = os.geteuid() == 0
        self.user = user if self.as_root else os.environ.get("USER", "postgres")
        self.directory = Path(tempfile.mkdtemp(prefix="rqgmm-pg-"))
        self.data = self.directory / "data"
        if self.as_root:
            shutil.chown(self.directory, user)
        self._run(["initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync", "-E", "UTF8"])
        options = f"-k {self.directory} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._run(["pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start"])
        self._databases = 0

    def _run(self, command: list[str]) -> None:
        command = [str(self.binaries / command[0]), *command[1:]]
        if self.as_root:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.directory}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = name or f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            except RuntimeError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
