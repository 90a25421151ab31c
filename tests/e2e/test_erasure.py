"""Erasure end to end on the shop (rule in cdc/demo/events.py): `cdc erase customer ID` while the bridge
runs, and a deleted customer row that erases by itself. Afterwards a scan of every ClickHouse table and
every topic of the broker finds none of the person's values, other customers are untouched, and
cdc.erasures holds one audit row per erasure without the values."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

from cdc.adapters.clickhouse import connect_warehouse
from cdc.adapters.postgres import PostgresSession, PostgresSource
from cdc.demo import shop
from cdc.demo.projections import projections
from pipelines.builder import ProjectionBuilder
from tests.e2e.conftest import BridgeProcess, cdc_cli, read_to_end, sql
from tests.polling import wait_until


def _person(dsn: str, tag: str) -> tuple[int, list[str]]:
    """A customer with values no one else has, two orders (one cancelled with the app's reason); its values."""
    name, email = f"Zebulon {tag}", f"zeb-{tag}@erase.example"
    phone, address = f"+99 {tag}", f"{tag} Erasure Lane"
    [(customer,)] = sql(
        dsn,
        "INSERT INTO customers (name, email, phone, address, birthday) VALUES (%s, %s, %s, %s, '1970-01-02')"
        " RETURNING id",
        (name, email, phone, address),
    )
    for _ in range(2):
        sql(
            dsn,
            "INSERT INTO orders (customer_id, delivery_address, total, notes) VALUES (%s, %s, 12.00, %s)",
            (customer, address, f'{{"note": "ring {tag}"}}'),
        )
    with PostgresSession(PostgresSource(dsn)) as session:
        shop.cancel_order(session, random.Random(1))  # some order, with an outbox reason
    return int(str(customer)), [name, email, phone, address, f"ring {tag}"]


def _clickhouse_hits(ch: Any, needles: list[str]) -> list[str]:
    """Every table of every database but ClickHouse's own, read whole: where a needle shows up."""
    tables = ch.query(
        "SELECT database, name FROM system.tables WHERE database NOT IN ('system', 'INFORMATION_SCHEMA',"
        " 'information_schema') AND engine NOT IN ('View', 'MaterializedView', 'Null')"
    ).result_rows
    hits = []
    for database, table in tables:
        text = ch.raw_query(f"SELECT * FROM `{database}`.`{table}` FORMAT TSVRaw").decode("utf-8", "replace")
        hits += [f"{database}.{table}: {n}" for n in needles if n in text]
    return hits


def _topic_hits(bootstrap: str, needles: list[str]) -> list[str]:
    """Every record of every topic: where a needle shows up."""
    return [
        f"{r.topic}@{r.offset}: {n}"
        for r in read_to_end(bootstrap)
        for n in needles
        if n.encode() in (r.key or b"") + b" " + (r.value or b"")
    ]


def test_erase_removes_a_person_from_every_table_and_topic_and_a_delete_erases_by_itself(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    source = PostgresSource(database)
    shop.install_schema(source)
    with PostgresSession(source) as session:
        shop.seed(session, customers=5)
    db = database.rsplit("/", 1)[1]
    args = ["run", "--source", database, "--translators", "cdc.demo.events"]
    bridge = BridgeProcess(state_dir, args, env={"CDC_PROJECTIONS__MODULES": "cdc.demo.projections"})
    bridges.append(bridge)
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    tag = uuid.uuid4().hex[:10]
    person, values = _person(database, tag)
    other, other_values = _person(database, tag[::-1])
    third, third_values = _person(database, tag.upper())
    wait_until(lambda: _clickhouse_hits(ch, [values[1], other_values[1]]) != [], 120, "the people in ClickHouse")
    wait_until(
        lambda: ch.query(f"SELECT count() FROM events.domain_events WHERE aggregate_type = 'order'"
                         f" AND JSONExtract(payload, 'customer_id', 'Int64') = {person}").result_rows[0][0] == 2,
        120,
        "the person's orders as events",
    )  # fmt: skip
    url = bridge.wait_for_line(r"ClickHouse endpoint: (http://\S+)").group(1)
    builder = ProjectionBuilder(connect_warehouse(url, state_dir))
    for report in projections(db):  # as Dagster builds them: the person's address is in orders_in_flight
        builder.full(report)
    assert any(h.startswith("reports.") for h in _clickhouse_hits(ch, values))
    assert _topic_hits(bootstrap, values)  # the scans can see what they look for
    customers_before = ch.query(f"SELECT count() FROM {db}.customers").result_rows[0][0]

    done = cdc_cli(state_dir, "erase", "customer", str(person))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topics: emptied" in done.stdout and "reports rebuilt: revenue_daily_product" in done.stdout
    assert _clickhouse_hits(ch, values) == []
    assert _topic_hits(bootstrap, values) == []
    assert ch.query(f"SELECT count() FROM {db}.customers").result_rows[0][0] == customers_before - 1
    assert _clickhouse_hits(ch, [other_values[1]]) != []  # the other person is untouched
    [(trigger, rows, events)] = ch.query("SELECT trigger, rows, events FROM cdc.erasures").result_rows
    assert trigger == "command" and rows["public.customers"] >= 1 and rows["public.orders"] >= 2 and events >= 3

    # the stream goes on after the round, and a customer deleted in the source erases by itself
    sql(database, "DELETE FROM orders WHERE customer_id = %s", (other,))
    sql(database, "DELETE FROM customers WHERE id = %s", (other,))
    wait_until(
        lambda: ch.query("SELECT count() FROM cdc.erasures WHERE trigger = 'delete'").result_rows[0][0] == 1,
        180,
        "the erasure a delete asked for",
    )
    assert _clickhouse_hits(ch, other_values) == []
    assert _topic_hits(bootstrap, other_values) == []
    assert ch.query("SELECT count() FROM cdc.erasure_requests FINAL").result_rows[0][0] == 0

    # with no bridge running, `cdc erase` erases the embedded store itself; reports built before are
    # named when it cannot rebuild them (exit 1), and rebuilt once it knows their modules
    wait_until(lambda: _clickhouse_hits(ch, [third_values[1]]) != [], 60, "the third person in ClickHouse")
    assert bridge.stop() == 0
    alone = cdc_cli(state_dir, "erase", "customer", str(third))
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "none: no bridge runs" in alone.stdout and "orders_in_flight" in alone.stderr
    again = cdc_cli(
        state_dir, "erase", "customer", str(third), env={"CDC_PROJECTIONS__MODULES": "cdc.demo.projections"}
    )
    assert again.returncode == 0 and "reports rebuilt: revenue_daily_product" in again.stdout, again.stderr
    assert _store_hits(state_dir, third_values) == 0
    assert _store_hits(state_dir, [values[1], other_values[1]]) == 0  # the scan in the stopped store works:
    assert _store_hits(state_dir, ["Margherita"]) > 0  # it finds what is there


def _store_hits(state_dir: Path, needles: list[str]) -> int:
    """Rows of every table of the stopped bridge's store holding a needle, through `cdc sql`."""
    listed = cdc_cli(
        state_dir,
        "sql",
        "SELECT '`' || database || '`.`' || name || '`' FROM system.tables WHERE database NOT IN ('system',"
        " 'INFORMATION_SCHEMA',"
        " 'information_schema') AND engine NOT IN ('View', 'MaterializedView', 'Null')",
        "--format",
        "csv",
    )
    assert listed.returncode == 0, listed.stderr
    tables = [line.strip().strip('"') for line in listed.stdout.splitlines()[1:] if line.strip()]  # after the header
    cond = " OR ".join(f"position(toString(tuple(*)), '{n}') > 0" for n in needles)
    query = " + ".join(f"(SELECT count() FROM {t} WHERE {cond})" for t in tables)
    counted = cdc_cli(state_dir, "sql", f"SELECT {query}", "--format", "csv")
    assert counted.returncode == 0, counted.stderr
    return int(counted.stdout.strip().splitlines()[-1])
