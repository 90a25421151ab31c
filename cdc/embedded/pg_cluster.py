"""A private PostgreSQL cluster for the demo and tests, driven by the server's own tools.

PostgreSQL refuses to run as root, so when we are root every server-side command
(initdb, pg_ctl, pg_isready) runs as the ``postgres`` OS user through ``runuser`` and the
data directory belongs to that user. Clients (psql) connect over TCP on 127.0.0.1 with
trust authentication, so they run as whoever we are.

A postmaster outlives a killed bridge (pg_ctl detaches it). ``start()`` therefore reuses a
postmaster that already serves this data directory healthily on the requested port, and
stops it first (``-m fast``) when it listens on another port or does not answer.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path

from cdc.embedded.net import LOOPBACK, port_in_use
from cdc.embedded.pg_tools import PgTools, server_user
from cdc.errors import StackError

logger = logging.getLogger(__name__)

_CONF_NAME = "cdc_bridge.conf"
_SOCKET_PATH_MAX = 107
_INITDB_ARGS = ("-U", "postgres", "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=trust")


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on ``127.0.0.1:port`` only.

    ``settings`` override or add server settings (values as postgresql.conf spells them, e.g.
    ``{"wal_level": "replica"}``); by default the cluster is ready for logical replication.
    """

    def __init__(
        self, data_dir: Path, port: int, log_path: Path | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        self._data_dir = data_dir.absolute()
        self._settings = dict(settings or {})
        self._port = port
        self._log_path = (log_path or self._data_dir.parent / "postgres.log").absolute()
        self._tools = PgTools(server_user())

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._log_path

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self._port}/{dbname}"

    def start(self) -> None:
        """Create the cluster if needed, (re)write our settings and start it; idempotent."""
        if not self.is_running():
            self._require_free_port()  # before initdb: fail without side effects
        if self._has_cluster():
            self._check_owner()
        else:
            self._init_cluster()
        self._write_config()
        if self._reuse_running():
            return
        self._require_free_port()
        self._prepare_log()
        result = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._log_path), timeout=90)
        if result.returncode != 0 or not self._ready():
            raise StackError(
                f"PostgreSQL in {self._data_dir} did not start on port {self._port}: "
                f"{_output(result)}\nlog {self._log_path}:\n{_tail(self._log_path)}"
            )
        logger.info("postgres started on %s:%d (%s)", LOOPBACK, self._port, self._data_dir)

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions, no crash recovery); idempotent."""
        if not self.is_running():
            return
        result = self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60", timeout=90)
        if result.returncode != 0 and self.is_running():
            raise StackError(f"could not stop PostgreSQL in {self._data_dir}: {_output(result)}")
        logger.info("postgres on port %d stopped", self._port)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m <mode>``: ``immediate`` is a crash and its recovery (the fault tests use it)."""
        result = self._pg_ctl("restart", "-m", mode, "-w", "-t", "60", "-l", str(self._log_path), timeout=90)
        if result.returncode != 0 or not self._ready():
            raise StackError(f"PostgreSQL in {self._data_dir} did not restart: {_output(result)}")

    def is_running(self) -> bool:
        """True when a postmaster serves this data directory (ready or not)."""
        if not self._has_cluster():
            return False
        return self._pg_ctl("status", timeout=30).returncode == 0

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists (safe to call on every start)."""
        self.run_sql(
            "postgres",
            "SELECT format('CREATE DATABASE %I', :'name') "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \\gexec",
            variables={"name": name},
        )

    def run_sql(self, dbname: str, sql: str, variables: dict[str, str] | None = None) -> str:
        """Run a psql script (stops at the first error) and return its unaligned output.

        ``variables`` become psql variables: use ``:'var'`` for literals, ``:"var"`` for names.
        """
        result = self._tools.psql(self._port, dbname, sql, variables or {})
        if result.returncode != 0:
            raise StackError(f"SQL on {LOOPBACK}:{self._port}/{dbname} failed: {_output(result)}")
        return result.stdout.strip()

    def _require_free_port(self) -> None:
        if port_in_use(self._port):
            raise StackError(
                f"PostgreSQL port {self._port} on {LOOPBACK} is already in use by another "
                "process; stop it or configure a different port for the embedded PostgreSQL."
            )

    def _pg_ctl(self, action: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self._tools.server("pg_ctl", action, "-D", str(self._data_dir), *args, timeout=timeout)

    def _has_cluster(self) -> bool:
        return (self._data_dir / "PG_VERSION").is_file()

    def _init_cluster(self) -> None:
        self._make_data_dir()
        result = self._tools.server("initdb", "-D", str(self._data_dir), *_INITDB_ARGS, timeout=180)
        if result.returncode != 0:
            raise StackError(f"initdb in {self._data_dir} failed: {_output(result)}")
        with (self._data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")
        logger.info("initialised a PostgreSQL cluster in %s", self._data_dir)

    def _make_data_dir(self) -> None:
        if self._data_dir.exists() and any(self._data_dir.iterdir()):
            raise StackError(
                f"{self._data_dir} is not empty but holds no PostgreSQL cluster; "
                "remove it or point the embedded PostgreSQL at another directory."
            )
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tools.check_access(self._data_dir.parent)
        self._data_dir.mkdir(mode=0o700, exist_ok=True)
        self._tools.user.chown(self._data_dir)
        self._data_dir.chmod(0o700)
        self._tools.check_access(self._data_dir)

    def _check_owner(self) -> None:
        owner = self._data_dir.stat().st_uid
        if owner != self._tools.user.uid:
            raise StackError(
                f"{self._data_dir} belongs to uid {owner}, but PostgreSQL runs as "
                f"{self._tools.user.name} (uid {self._tools.user.uid}); "
                f"chown -R {self._tools.user.name} {self._data_dir} or remove it."
            )

    def _write_config(self) -> None:
        socket_dir = self._data_dir
        if len(f"{socket_dir}/.s.PGSQL.{self._port}") > _SOCKET_PATH_MAX:
            socket_dir = Path("/tmp")  # sticky and world-writable; the port keeps it unique
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self._port),
            "unix_socket_directories": f"'{socket_dir}'",
            "wal_level": "logical",
            "max_replication_slots": "10",
            "max_wal_senders": "10",
            "max_connections": "50",
            "shared_buffers": "64MB",
            "work_mem": "4MB",
            "maintenance_work_mem": "64MB",
            "logging_collector": "off",
            **self._settings,
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._tools.write_owned(self._data_dir / _CONF_NAME, "# managed by cdc\n" + body)
        hba = (
            "# managed by cdc: loopback only, trust\n"
            "local all         all                trust\n"
            "local replication all                trust\n"
            f"host  all         all  {LOOPBACK}/32 trust\n"
            f"host  replication all  {LOOPBACK}/32 trust\n"
        )
        self._tools.write_owned(self._data_dir / "pg_hba.conf", hba)

    def _reuse_running(self) -> bool:
        if not self.is_running():
            return False
        running_port = _postmaster_port(self._data_dir)
        if running_port == self._port and self._ready():
            # pick up pg_hba.conf and reloadable settings we may just have rewritten
            self._pg_ctl("reload", timeout=30)
            logger.info("reusing the postmaster already running on port %d", self._port)
            return True
        logger.warning(
            "postmaster in %s (port %s) is unhealthy or on another port: restarting it", self._data_dir, running_port
        )
        self.stop()
        return False

    def _ready(self) -> bool:
        result = self._tools.server("pg_isready", "-h", LOOPBACK, "-p", str(self._port), "-t", "10", timeout=30)
        return result.returncode == 0

    def _prepare_log(self) -> None:
        """pg_ctl opens the log as the server user: create it here and hand it over."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_path.touch(exist_ok=True)
        self._tools.user.chown(self._log_path)
        self._tools.check_access(self._log_path, "-w")


def _postmaster_port(data_dir: Path) -> int | None:
    """The port recorded in postmaster.pid (4th line), None if unreadable."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return _last_lines(f"{result.stdout}\n{result.stderr}")


def _last_lines(text: str, count: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def _tail(path: Path) -> str:
    try:
        return _last_lines(path.read_text(errors="replace"), 15)
    except OSError as exc:
        return f"(unreadable: {exc})"
