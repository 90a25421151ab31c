"""PostgreSQL's own command-line tools, run as the OS user the server must run as (never root)."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cdc.embedded.net import LOOPBACK
from cdc.errors import StackError


@dataclass(frozen=True)
class ServerUser:
    """The OS user PostgreSQL runs as; ``switch`` when that is not us (we are root)."""

    name: str
    uid: int
    gid: int
    switch: bool

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)


def server_user() -> ServerUser:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ServerUser(me.pw_name, me.pw_uid, me.pw_gid, switch=False)
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise StackError(
            "PostgreSQL refuses to run as root and there is no 'postgres' OS user; "
            "create one (useradd --system postgres) or run the bridge as a non-root user."
        ) from exc
    return ServerUser(pg.pw_name, pg.pw_uid, pg.pw_gid, switch=True)


@functools.cache
def _bindir() -> Path:
    """The server binaries: ``pg_config --bindir``, else the newest Debian install."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if out.returncode == 0 and (candidate / "initdb").is_file():
            return candidate
    installs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_major_version)
    if installs:
        return installs[-1].parent
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql "
        "(e.g. apt-get install postgresql-15) or set CDC_SOURCE_DSN to use your own database."
    )


def _major_version(initdb: Path) -> int:
    name = initdb.parent.parent.name
    return int(name) if name.isdigit() else 0


class PgTools:
    """Runs the PostgreSQL command-line tools; server tools as the server user."""

    def __init__(self, user: ServerUser) -> None:
        self.user = user

    def server(self, tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self._run([str(_bindir() / tool), *args], as_server=True, timeout=timeout)

    def psql(self, port: int, dbname: str, sql: str, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = [str(_bindir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", LOOPBACK, "-p", str(port), "-U", "postgres", "-d", dbname, "-f", "-"]
        for key, value in variables.items():
            argv += ["-v", f"{key}={value}"]
        return self._run(argv, as_server=False, timeout=600, stdin=sql)

    def write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        self.user.chown(path)
        path.chmod(0o600)

    def check_access(self, path: Path, flag: str = "-x") -> None:
        """Fail with the directory to fix when the server user cannot reach ``path``."""
        if self._test(flag, path):
            return
        blocker = next((d for d in reversed(path.parents) if not self._test("-x", d)), path)
        raise StackError(
            f"the {self.user.name} OS user (PostgreSQL will not run as root) cannot reach "
            f"{path}: {blocker} (mode {blocker.stat().st_mode & 0o777:o}) blocks it; run "
            f"`chmod o+x {blocker}` or put the state directory elsewhere, e.g. under /var/tmp."
        )

    def _test(self, flag: str, path: Path) -> bool:
        return self._run(["test", flag, str(path)], as_server=True, timeout=30).returncode == 0

    def _run(
        self, argv: list[str], *, as_server: bool, timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        tool = Path(argv[0]).name
        if as_server and self.user.switch:
            argv = ["runuser", "-u", self.user.name, "--", *argv]
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "cdc"}
        try:
            # cwd "/": the server user may not be allowed into our working directory
            return subprocess.run(
                argv, input=stdin, cwd="/", env=env, text=True, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{tool} timed out after {timeout:.0f}s") from exc
