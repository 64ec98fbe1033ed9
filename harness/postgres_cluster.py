"""A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's binaries, one folder, one port.

The server refuses to run as root, and CI runs as root: the cluster's folder
is made outside pytest's root-only temp folder and given to the unprivileged
`postgres` user, which runs initdb and the server (through runuser). As any
other user the cluster simply runs as that user. It listens on 127.0.0.1 at a
free port with password (SCRAM) authentication, so tests can prove a wrong
password is refused, and fsync is off: a throwaway cluster need not survive a
power cut, and the tests stay fast on a busy disk.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "cluster-superuser-secret"
ROLE = "ocr"
ROLE_PASSWORD = "ocr-inbox-test-secret"  # the daemon's role: owns its database, no more


class ClusterUnavailable(Exception):
    """No PostgreSQL server binaries on this machine, or they cannot be run here."""


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    for pg_ctl in reversed(found):
        bin_dir = Path(pg_ctl).parent
        if (bin_dir / "initdb").exists():
            return bin_dir
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """One PostgreSQL cluster. `start()` makes it; `stop()` removes it; `restart()` bounces the server."""

    def __init__(self, bin_dir: Path, port: int | None = None, folder: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port if port is not None else _free_port()
        self.folder = (
            folder if folder is not None else Path(tempfile.mkdtemp(prefix="ocr-inbox-pg-"))
        )
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as error:
                raise ClusterUnavailable("running as root and there is no postgres user") from error
            if folder is None:
                os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *argv],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.folder,
            timeout=120,
        )

    def start(self) -> Cluster:
        password_file = self.folder / "superuser.pw"
        password_file.write_text(SUPERUSER_PASSWORD + "\n")
        if self._as_user:
            account = pwd.getpwnam("postgres")
            os.chown(password_file, account.pw_uid, account.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            # The socket lies in a folder only the server's user may enter;
            # TCP, which the daemon uses, asks for a password.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        self.start_server()
        self.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}' CREATEDB")
        return self

    def start_server(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"
        )

    def stop_server(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (clients are cut off), stay down a while, start it again."""
        self.stop_server()
        time.sleep(down_seconds)
        self.start_server()

    def stop(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            "immediate",
            "stop",
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser through psql over the socket; its output."""
        result = self._run(
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            statement,
        )
        return result.stdout.strip()

    def url(self, database: str, *, password: str | None = ROLE_PASSWORD, user: str = ROLE) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """A fresh empty database owned by the daemon's role; its URL (password included)."""
        import psycopg  # the base install has it; imported here so the harness loads without

        superuser = self.url("postgres", password=SUPERUSER_PASSWORD, user=SUPERUSER)
        with psycopg.connect(superuser, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return self.url(name)


def start_cluster() -> Cluster:
    """Start a cluster, or raise ClusterUnavailable saying why not."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise ClusterUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise ClusterUnavailable("running as root without runuser to start the server as postgres")
    cluster = Cluster(bin_dir)
    try:
        return cluster.start()
    except subprocess.CalledProcessError as error:
        cluster.stop()
        raise ClusterUnavailable(
            f"the test cluster did not start: {error.stderr or error.stdout}"
        ) from error


# --- one cluster for a whole test run, shared by pytest-xdist's workers ------------

_RECORD = "cluster.json"


def shared_cluster(run_dir: Path) -> Cluster:
    """The run's cluster: started by the first process that asks, found by the others.

    `run_dir` is made by the controlling pytest process before its workers
    start (they inherit it); a lock in it makes one process start the
    cluster. A failure to start is recorded too, so every test skips (or
    fails) at once with the same reason.
    """
    with open(run_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = run_dir / _RECORD
        if record.exists():
            known = json.loads(record.read_text())
            if "error" in known:
                raise ClusterUnavailable(known["error"])
            return Cluster(Path(known["bin_dir"]), known["port"], Path(known["folder"]))
        try:
            cluster = start_cluster()
        except ClusterUnavailable as error:
            record.write_text(json.dumps({"error": str(error)}))
            raise
        record.write_text(
            json.dumps(
                {
                    "bin_dir": str(cluster.bin_dir),
                    "port": cluster.port,
                    "folder": str(cluster.folder),
                }
            )
        )
        return cluster


def stop_shared_cluster(run_dir: Path) -> None:
    """At the end of the run (controlling process): stop the cluster if one was started."""
    record = run_dir / _RECORD
    if record.exists():
        known = json.loads(record.read_text())
        if "error" not in known:
            Cluster(Path(known["bin_dir"]), known["port"], Path(known["folder"])).stop()
    shutil.rmtree(run_dir, ignore_errors=True)
