"""The `cdc` command as a user meets it: the demo, and one clear line for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.embedded.net import free_port
from cdc.embedded.pg_cluster import EmbeddedPostgres
from tests.e2e.conftest import _tempdir, sql

pytestmark = pytest.mark.e2e


def cdc(
    state_dir: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_demo_with_duration_verifies_every_table(state_dir: Path) -> None:
    done = cdc(state_dir, "demo", "--duration", "25", "--rate", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "ClickHouse endpoint: http://127.0.0.1:" in out
    assert "Dagster UI:          http://127.0.0.1:" in out, out
    daemon_log = state_dir / "logs" / "dagster-daemon.log"
    tail = "\n".join(daemon_log.read_text(errors="replace").splitlines()[-60:]) if daemon_log.exists() else ""
    built_line = "reports built by Dagster: 5, all up to the events stored when the load stopped"
    assert built_line in out, out + "\n--- dagster-daemon.log\n" + tail
    assert "all tables match" in out
    for table in ("public.customers", "public.products", "public.orders", "public.order_items"):
        line = next(x for x in out.splitlines() if x.startswith(table))
        pg_rows, ch_rows = line.split()[1:3]
        assert pg_rows == ch_rows and int(pg_rows.replace(",", "")) > 0
    assert "Traceback" not in done.stderr
    # the warehouse outlives the demo: the same state dir answers afterwards, no bridge running
    after = cdc(state_dir, "sql", "SELECT count() > 0 FROM shop.orders_changes WHERE _op = 'u'", "--format", "csv")
    assert after.returncode == 0 and after.stdout.strip().splitlines()[-1] == "1"
    # while it ran, the Dagster sensor saw new events and its runs built the reports
    built = cdc(state_dir, "sql", "SELECT uniqExact(projection) FROM reports._watermarks", "--format", "csv")
    assert built.returncode == 0 and built.stdout.strip().splitlines()[-1] == "5", built.stdout + built.stderr
    assert list((state_dir / "dagster" / "storage").iterdir())  # the runs' records, as the UI shows them


@pytest.fixture(scope="module")
def replica_pg() -> Iterator[EmbeddedPostgres]:
    root = _tempdir("cdc-e2e-replica-")
    cluster = EmbeddedPostgres(root / "data", free_port(), root / "postgres.log")
    cluster.start()
    cluster.run_sql("postgres", "ALTER SYSTEM SET wal_level = replica")
    cluster.stop()
    cluster.start()
    yield cluster
    cluster.stop()


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_source_without_logical_wal_is_refused_with_the_fix(replica_pg: EmbeddedPostgres, state_dir: Path) -> None:
    assert sql(replica_pg.dsn(), "SHOW wal_level") == [("replica",)]
    line = _one_error_line(cdc(state_dir, "run", "--source", replica_pg.dsn(), timeout=180))
    # refused by the same checks as `cdc preflight`, before anything starts
    assert "wal_level is 'replica'" in line and "wal_level = logical" in line and "cdc preflight" in line


def test_missing_table_is_named(database: str, state_dir: Path) -> None:
    sql(database, "CREATE TABLE present (id int PRIMARY KEY)")
    line = _one_error_line(
        cdc(state_dir, "run", "--source", database, "--tables", "public.present,public.nope", timeout=180)
    )
    assert "public.nope" in line and "not found" in line


def test_an_unreadable_table_name_is_one_line_that_says_how_to_write_it(database: str, state_dir: Path) -> None:
    sql(database, 'CREATE SCHEMA "my.schema"; CREATE TABLE "my.schema".t (id int PRIMARY KEY)')
    line = _one_error_line(cdc(state_dir, "run", "--source", database, "--tables", "my.schema.t", timeout=180))
    assert "my.schema.t" in line and "double quotes" in line


def test_unreachable_source_hides_the_password(state_dir: Path) -> None:
    dsn = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/db"
    done = cdc(state_dir, "run", "--source", dsn, timeout=180)
    line = _one_error_line(done)
    assert "cannot connect to PostgreSQL" in line
    assert "s3cret" not in done.stdout + done.stderr


def test_unreachable_broker_is_one_line(database: str, state_dir: Path) -> None:
    sql(database, "CREATE TABLE t (id int PRIMARY KEY)")
    done = cdc(
        state_dir,
        "run",
        "--source",
        database,
        timeout=300,
        env={"CDC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
    )
    line = _one_error_line(done)
    assert "Kafka" in line and "CDC_KAFKA_BOOTSTRAP_SERVERS" in line


def test_sql_error_is_one_line(state_dir: Path) -> None:
    line = _one_error_line(cdc(state_dir, "sql", "SELECT * FROM no_such_db.no_such_table"))
    assert "no_such" in line


def test_config_mistakes_are_one_line_before_anything_starts(state_dir: Path) -> None:
    missing = _one_error_line(cdc(state_dir, "run", "--config", str(state_dir / "nope.toml"), timeout=60))
    assert "cannot read config" in missing and "nope.toml" in missing
    config = state_dir / "cdc.toml"
    config.write_text('[[source]]\nname = "a"\ndsn_env = "A_DSN"\n')
    unset = _one_error_line(cdc(state_dir, "run", "--config", str(config), timeout=60))
    assert "A_DSN is not set" in unset
    both = _one_error_line(
        cdc(
            state_dir,
            "run",
            "--config",
            str(config),
            "--source",
            "postgresql://x/y",
            timeout=60,
            env={"A_DSN": "postgresql://secret:pw@127.0.0.1:1/a"},
        )
    )
    assert "drop --source" in both and "pw@" not in both
    from_env = _one_error_line(cdc(state_dir, "run", timeout=60, env={"CDC_CONFIG": str(config)}))
    assert "A_DSN is not set" in from_env  # CDC_CONFIG is read like --config
    assert cdc(state_dir, "sql", "SELECT 1", timeout=120, env={"CDC_CONFIG": str(config)}).returncode == 0
