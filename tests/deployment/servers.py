"""The deployment's own PostgreSQL (metadata database) and Redis (Celery broker): Debian's
binaries, started here on a free loopback port each, with their state in a private folder,
run as their Debian system users (PostgreSQL refuses root), stopped by pid. Nothing
system-wide is started or touched."""

from __future__ import annotations

import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Component, free_loopback_port, signal_pids, tail, wait_gone

STARTS = 3  # a free port can be taken between picking it and binding it: try again


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding `postgres` (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def missing_binaries() -> list[str]:
    """What tests/deployment/install.sh provides and is not here."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql (/usr/lib/postgresql/*/bin/postgres)")
    for tool in ("redis-server", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


SYSTEM_USER_HOMES = {"postgres": ("/var/lib/postgresql", "/bin/bash"), "redis": ("/var/lib/redis", "/usr/sbin/nologin")}


def ensure_system_user(name: str) -> None:
    """The Debian system user a server runs as is there (recreated as tests/support/system_users.sh
    says why, if the machine lost it)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    home, shell = SYSTEM_USER_HOMES[name]
    script = Path(__file__).resolve().parent.parent / "support" / "system_users.sh"
    done = subprocess.run(["bash", "-c", 'source "$1" && ensure_system_user "$2" "$3" "$4"', "ensure", str(script), name, home, shell],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise OSError(f"system user {name!r} is missing and could not be created: {done.stderr.strip()}; "
                      "run tests/deployment/install.sh")


def _chown_tree(path: Path, user: str) -> None:
    ensure_system_user(user)
    shutil.chown(path, user, user)
    for child in path.rglob("*"):
        shutil.chown(child, user, user)


def _wait_line(component: Component, line: str, timeout: float) -> None:
    """Wait until the server's log holds `line` (it printed it once ready), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in component.log.read_text(errors="replace"):
            return
        if not component.running():
            raise OSError(f"{component.name} exited ({component.popen.returncode}) before it was ready\n{component.tail()}")
        time.sleep(0.1)
    raise AssertionError(f"{component.name} not ready after {timeout}s (no {line!r} in its log)\n{component.tail()}")


def _spawn(name: str, argv: list[str], user: str, log: Path, cwd: Path) -> Component:
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            argv, user=user, group=user, extra_groups=[], cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return Component(name, popen, log)


@dataclass
class PostgresServer:
    """PostgreSQL in `folder` (data/, run/ for the unix socket, postgres.log), one database
    `airflow` owned by the superuser `airflow` with a random password, TCP on 127.0.0.1."""

    folder: Path
    user: str = "airflow"
    database: str = "airflow"
    system_user: str = "postgres"

    def __post_init__(self):
        self.password = secrets.token_hex(16)
        self.port = 0
        self.component: Component | None = None
        self.bin = postgres_bin_dir()

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 120) -> Component:
        data, run = self.folder / "data", self.folder / "run"
        for path in (data, run):
            path.mkdir(parents=True, exist_ok=True)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        _chown_tree(self.folder, self.system_user)
        initdb = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}", "--auth-local=peer",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            user=self.system_user, group=self.system_user, extra_groups=[], cwd=self.folder,
            capture_output=True, text=True, timeout=timeout,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise AssertionError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout[-2000:]}\n{initdb.stderr[-2000:]}")
        for attempt in range(1, STARTS + 1):
            self.port = free_loopback_port()
            log = self.folder / f"postgres.{attempt}.log"
            self.component = _spawn("postgres", [
                str(self.bin / "postgres"), "-D", str(data),
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}", "-c", f"unix_socket_directories={run}",
                # A throw-away test database: durability buys nothing, speed matters on 2 cores.
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=300", "-c", "shared_buffers=64MB",
            ], self.system_user, log, self.folder)
            try:
                _wait_line(self.component, "database system is ready to accept connections", timeout)
                break
            except OSError:
                if attempt == STARTS or "could not bind" not in tail(log):
                    raise
        self._psql(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"', database="postgres", timeout=timeout)
        return self.component

    def _psql(self, sql: str, database: str | None = None, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database or self.database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            env={"PGPASSWORD": self.password, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def query(self, sql: str) -> str:
        """Run SQL on the airflow database; its rows as psql -At prints them."""
        return self._psql(sql)

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: disconnects clients), then SIGKILL if it hangs."""
        stop_server(self.component, signal.SIGINT, timeout)


@dataclass
class RedisServer:
    """redis-server in `folder` (no persistence), password protected, TCP on 127.0.0.1."""

    folder: Path
    system_user: str = "redis"

    def __post_init__(self):
        self.password = secrets.token_hex(16)
        self.port = 0
        self.component: Component | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 60) -> Component:
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, STARTS + 1):
            self.port = free_loopback_port()
            config = self.folder / "redis.conf"
            config.write_text(
                "bind 127.0.0.1\n"
                f"port {self.port}\n"
                "protected-mode yes\n"
                f"requirepass {self.password}\n"
                f"dir {self.folder}\n"
                "daemonize no\n"
                'save ""\n'
                "appendonly no\n"
                "loglevel notice\n"
            )
            config.chmod(0o600)
            _chown_tree(self.folder, self.system_user)
            log = self.folder / f"redis.{attempt}.log"
            self.component = _spawn("redis", [shutil.which("redis-server") or "redis-server", str(config)],
                                    self.system_user, log, self.folder)
            try:
                _wait_line(self.component, "Ready to accept connections", timeout)
                break
            except OSError:
                if attempt == STARTS or "Address already in use" not in tail(log):
                    raise
        if self.ping() != "+PONG":
            raise AssertionError(f"redis answers {self.ping()!r} to PING\n{self.component.tail()}")
        return self.component

    def command(self, *words: str, timeout: float = 10) -> str:
        """AUTH, then one command in the inline protocol; the first line of its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(f"AUTH {self.password}\r\n{' '.join(words)}\r\n".encode())
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        lines = data.decode(errors="replace").split("\r\n")
        if lines[0] != "+OK":
            raise AssertionError(f"redis refused AUTH: {lines[0]!r}")
        return lines[1] if len(lines) > 1 else ""

    def ping(self) -> str:
        return self.command("PING")

    def stop(self, timeout: float = 30) -> None:
        stop_server(self.component, signal.SIGTERM, timeout)


def stop_server(component: Component | None, sig: int, timeout: float) -> None:
    """`sig` to the server (the session leader), a bounded wait, then SIGKILL to what is
    left of its session (its worker processes)."""
    if component is None:
        return
    component.stopped = True
    if component.running():
        component.popen.send_signal(sig)
    try:
        component.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    if wait_gone(component.members, 5):
        signal_pids(component.members(), signal.SIGKILL)
        wait_gone(component.members, 10)
    try:
        component.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
