"""The embedded PostgreSQL cluster: a real initdb/pg_ctl cluster on a free loopback port."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc.embedded.net import free_port, port_in_use
from cdc.embedded.pg_cluster import EmbeddedPostgres
from cdc.errors import StackError


def _state_dir() -> Path:
    """A state dir the postgres OS user can traverse.

    pytest's tmp_path lives under /tmp/pytest-of-<user>, which is 0700: as root, the postgres
    user could not reach a data dir there (test_unreachable_parent_is_explained shows it).
    """
    path = Path(tempfile.mkdtemp(prefix="cdc-pg-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = _state_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedPostgres]:
    path = _state_dir()
    pg = EmbeddedPostgres(path / "pg", free_port())
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(path, ignore_errors=True)


def _scalar(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_cluster_is_ready_for_logical_replication(cluster: EmbeddedPostgres) -> None:
    dsn = cluster.dsn()
    assert dsn == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    assert _scalar(dsn, "SHOW wal_level") == "logical"
    assert _scalar(dsn, "SHOW max_replication_slots") == "10"
    assert _scalar(dsn, "SHOW listen_addresses") == "127.0.0.1"
    assert _scalar(dsn, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'postgres'") == "UTF8"
    assert cluster.run_sql("postgres", "SHOW wal_level") == "logical"


def test_data_dir_belongs_to_the_server_user(cluster: EmbeddedPostgres) -> None:
    info = cluster.data_dir.stat()
    assert info.st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        import pwd

        assert info.st_uid == pwd.getpwnam("postgres").pw_uid


def test_replication_connection_over_loopback(cluster: EmbeddedPostgres) -> None:
    conninfo = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres replication=database"
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    result = subprocess.run(
        [psql, "-X", "-At", "-c", "IDENTIFY_SYSTEM", conninfo], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    cluster.run_sql("postgres", "SELECT pg_create_logical_replication_slot('t_slot', 'pgoutput')")
    cluster.run_sql("postgres", "SELECT pg_drop_replication_slot('t_slot')")


def test_create_database_is_idempotent(cluster: EmbeddedPostgres) -> None:
    cluster.create_database("shop")
    cluster.create_database("shop")
    cluster.create_database('odd "name"')
    names = cluster.run_sql("postgres", "SELECT datname FROM pg_database ORDER BY 1").splitlines()
    assert names.count("shop") == 1
    assert 'odd "name"' in names
    assert _scalar(cluster.dsn("shop"), "SELECT current_database()") == "shop"


def test_run_sql_reports_errors(cluster: EmbeddedPostgres) -> None:
    with pytest.raises(StackError, match="no_such_column"):
        cluster.run_sql("postgres", "SELECT no_such_column")


def test_second_start_while_running_is_harmless(cluster: EmbeddedPostgres) -> None:
    pid = _postmaster_pid(cluster)
    cluster.start()
    assert cluster.is_running()
    assert _postmaster_pid(cluster) == pid
    assert _scalar(cluster.dsn(), "SELECT 1") == 1


def test_stop_and_start_keep_data(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir / "pg", free_port())
    pg.start()
    try:
        pg.create_database("keep")
        pg.run_sql("keep", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        pg.stop()
        assert not pg.is_running()
        assert not port_in_use(pg.port)
        pg.stop()  # idempotent
        pg.start()
        assert pg.run_sql("keep", "SELECT count(*) FROM t") == "2"
    finally:
        pg.stop()


def test_leftover_postmaster_on_another_port_is_restarted(state_dir: Path) -> None:
    """A previous run (killed, so never stopped) left the postmaster running on its old port."""
    old = EmbeddedPostgres(state_dir / "pg", free_port())
    old.start()
    new = EmbeddedPostgres(state_dir / "pg", free_port())
    try:
        new.start()
        assert new.run_sql("postgres", "SHOW port") == str(new.port)
        assert not port_in_use(old.port)
    finally:
        new.stop()


def test_port_in_use_is_refused(state_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .*already in use"):
            EmbeddedPostgres(state_dir / "pg", port).start()
    assert not (state_dir / "pg").exists()  # refused before initdb


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand the cluster to the postgres user")
def test_unreachable_parent_is_explained(state_dir: Path) -> None:
    hidden = state_dir / "private"  # like a CI checkout under a 0700 home directory
    hidden.mkdir(mode=0o700)
    with pytest.raises(StackError, match=f"{re.escape(str(hidden))} \\(mode 700\\) blocks it.*chmod o\\+x"):
        EmbeddedPostgres(hidden / "state" / "pg", free_port()).start()
