"""Two sources in one `cdc run` from a cdc.toml, with column masking and exclusion, on the real stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cdc.embedded.pg_cluster import EmbeddedPostgres
from tests.e2e.conftest import BridgeProcess, fresh_database, read_to_end, sql
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text, notes text);
ALTER TABLE customers REPLICA IDENTITY FULL;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, amount numeric(10,2) NOT NULL);
CREATE TABLE audit (id bigint PRIMARY KEY, what text);
"""
SECRETS = ("ALPHASECRET", "ALPHAPHONE", "ALPHANOTE")  # must appear nowhere downstream

CONFIG = """
[[source]]
name = "alpha"
dsn_env = "ALPHA_DSN"
exclude_tables = ["public.audit"]
exclude_columns = ["public.customers.notes"]
mask = { "public.customers.email" = "hash", "public.customers.phone" = "redact" }

[[source]]
name = "beta"
dsn_env = "BETA_DSN"
tables = ["public.customers", "public.orders"]
events = false
"""


def _fresh_db(pg: EmbeddedPostgres, name: str) -> str:
    dsn = fresh_database(pg, name)
    sql(dsn, SCHEMA)
    return dsn


def _customer(dsn: str, i: int, tag: str, email: str | None = None) -> None:
    mail = email or f"{tag}-{i}@example.com"
    sql(
        dsn,
        "INSERT INTO customers VALUES (%s, %s, %s, %s, %s)",
        (i, f"name {i}", mail, f"{tag.replace('SECRET', 'PHONE')}-{i}", f"{tag.replace('SECRET', 'NOTE')} {i}"),
    )
    sql(dsn, "INSERT INTO orders VALUES (%s, %s, %s)", (i, i, f"{i}.50"))


def _count(ch: Any, table: str) -> int:
    return int(ch.query(f"SELECT count() FROM {table}").result_rows[0][0])


def _stored_tables(ch: Any) -> list[str]:
    rows = ch.query(
        "SELECT database, name FROM system.tables WHERE database IN ('alpha', 'beta', 'events', 'cdc')"
        " AND engine LIKE '%MergeTree%'"
    ).result_rows
    return [f"`{db}`.`{name}`" for db, name in rows]


def _hits(ch: Any, table: str, needle: str) -> int:
    return int(
        ch.query(
            f"SELECT count() FROM {table} WHERE position(toString(tuple(*)), %(n)s) > 0", parameters={"n": needle}
        ).result_rows[0][0]
    )


def _kafka_bytes(bootstrap: str) -> bytes:
    return b"".join((m.key or b"") + (m.value or b"") for m in read_to_end(bootstrap))


def test_two_sources_with_masking_visible_nowhere_downstream(
    pg: EmbeddedPostgres, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    alpha, beta = _fresh_db(pg, "src_alpha"), _fresh_db(pg, "src_beta")
    for i in range(1, 6):
        _customer(alpha, i, "ALPHASECRET")
        _customer(beta, i, "betaplain")
    _customer(alpha, 6, "ALPHASECRET", email="ALPHASECRET-1@example.com")  # same email as customer 1
    sql(alpha, "INSERT INTO audit VALUES (1, 'left out')")
    config = state_dir / "cdc.toml"
    config.write_text(CONFIG)
    bridge = BridgeProcess(
        state_dir,
        ["run", "--config", str(config)],
        env={"ALPHA_DSN": alpha, "BETA_DSN": beta, "CDC_MASK_SALT": "pepper1234salt"},
    )
    bridges.append(bridge)
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    wait_until(
        lambda: _count(ch, "alpha.customers") == 6 and _count(ch, "beta.customers") == 5,
        180,
        "both snapshots in ClickHouse",
    )

    # streaming: inserts in both, an update of a masked column (before and after images), a delete
    for i in range(7, 10):
        _customer(alpha, i, "ALPHASECRET")
        _customer(beta, i, "betaplain")
    sql(alpha, "UPDATE customers SET email = 'ALPHASECRET-new@example.com', phone = 'ALPHAPHONE-new' WHERE id = 2")
    sql(alpha, "DELETE FROM customers WHERE id = 3")
    sql(beta, "DELETE FROM orders WHERE id = 1")
    wait_until(
        lambda: (
            _count(ch, "alpha.customers") == 8
            and _count(ch, "beta.orders") == 7
            and _count(ch, "alpha.customers_changes") == 6 + 3 + 2
        ),
        120,
        "streamed changes in ClickHouse",
    )
    assert _count(ch, "alpha.orders") == 9 and _count(ch, "beta.customers") == 8

    columns = [r[0] for r in ch.query("DESCRIBE alpha.customers").result_rows]
    assert columns == ["id", "name", "email", "phone"]  # notes excluded
    assert "notes" in [r[0] for r in ch.query("DESCRIBE beta.customers").result_rows]
    assert ch.query("EXISTS TABLE alpha.audit").result_rows == [(0,)]
    emails = dict(ch.query("SELECT id, email FROM alpha.customers").result_rows)
    assert all(re.fullmatch(r"[0-9a-f]{64}", e) for e in emails.values()), emails
    assert emails[1] == emails[6] and emails[1] != emails[4]  # a stable hash: joins and counts still work
    assert {p for (p,) in ch.query("SELECT DISTINCT phone FROM alpha.customers").result_rows} == {"********"}

    tables = _stored_tables(ch)
    assert any(t.startswith("`events`") for t in tables)
    wait_until(lambda: _hits(ch, "events.domain_events", "customer") > 0, 120, "alpha's domain events stored")
    for needle in SECRETS:
        leaks = {t: n for t in tables if (n := _hits(ch, t, needle))}
        assert not leaks, f"{needle} found in {leaks}"
    assert _hits(ch, "`beta`.`_state_customers`", "betaplain") == 8  # the scan finds what is there
    topics = _kafka_bytes(bootstrap)
    assert b"betaplain" in topics
    for needle in SECRETS:
        assert needle.encode() not in topics, f"{needle} reached Kafka"
    for log in ("cdc.log", "debezium.log", "events.log"):
        assert "pepper1234salt" not in (state_dir / "logs" / log).read_text(), f"the salt is in {log}"
    assert "pepper1234salt" not in bridge.output()
    assert bridge.stop() == 0
