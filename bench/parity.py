"""Is ClickHouse exactly PostgreSQL? Values, not only counts, and nothing twice.

Per table: the row count and, per column, checksums computed on both sides from the values
themselves (sums, key-weighted sums, md5 of text) — a lost, doubled or wrong row changes them.
Then: no key twice among the current rows, no change twice in the change log, and every change of
the log once as a domain event in the event store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

WEIGHT = 997  # key-weighted sums: a value moved to another row changes them

_PG = {
    "int": "sum({c}::numeric), sum({c}::numeric * (id % {w})), count({c})",
    "decimal": "sum({c}), sum({c} * (id % {w})), count({c})",
    "text": "sum(length({c})), sum(('x' || substr(md5({c}), 1, 8))::bit(32)::bigint), count({c})",
    "ts": "sum((extract(epoch FROM {c}) * 1000000)::numeric), 0, count({c})",
}
_CH = {
    "int": "sum(toInt128({c})), sum(toInt128({c}) * (id % {w})), count({c})",
    "decimal": "sum({c}), sum({c} * (id % {w})), count({c})",
    "text": "sum(lengthUTF8({c})), sum(reinterpretAsUInt32(reverse(unhex(substring(hex(MD5({c})), 1, 8))))),"
    " count({c})",
    "ts": "sum(toInt128(toUnixTimestamp64Micro({c}))), 0, count({c})",
}


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not self.problems


def _norm(values: Any) -> tuple[str, ...]:
    return tuple(str(Decimal(str(v)).normalize()) if v is not None else "0" for v in values)


def counts_match(tables: Mapping[str, Mapping[str, str]], pg_dsn: str, ch: Any, database: str) -> bool:
    """Row counts only: cheap enough to poll while the bridge catches up."""
    with psycopg.connect(pg_dsn) as conn:
        for table in tables:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if row is None or ch.query(f"SELECT count() FROM `{database}`.`{table}`").result_rows[0][0] != row[0]:
                return False
    return True


def checksums(tables: Mapping[str, Mapping[str, str]], pg_dsn: str, ch: Any, database: str) -> Verdict:
    """Compare every table's row count and column checksums; ``ch`` is a clickhouse-connect client."""
    verdict = Verdict()
    with psycopg.connect(pg_dsn) as conn:
        for table, columns in tables.items():
            pg_sql = ", ".join(["count(*)"] + [_PG[k].format(c=c, w=WEIGHT) for c, k in columns.items()])
            ch_sql = ", ".join(["count()"] + [_CH[k].format(c=f"`{c}`", w=WEIGHT) for c, k in columns.items()])
            pg_row = conn.execute(f"SELECT {pg_sql} FROM {table}").fetchone()
            ch_row = ch.query(f"SELECT {ch_sql} FROM `{database}`.`{table}`").result_rows[0]
            assert pg_row is not None
            verdict.rows[table] = int(pg_row[0])
            if _norm(pg_row) != _norm(ch_row):
                verdict.problems.append(f"{table}: PostgreSQL {_norm(pg_row)} != ClickHouse {_norm(ch_row)}")
    return verdict


def no_repeats(tables: Mapping[str, Mapping[str, str]], ch: Any, database: str, source: str) -> list[str]:
    """No key twice among current rows, no insert twice in a change log, no event twice, and one
    event for every change of the log. Existing rows are left out of the last: the copy path loads
    them into the current state only, and makes their events (op r) all the same."""
    problems = []
    for table in tables:
        q = f"`{database}`.`{table}`"
        twice = ch.query(f"SELECT count() - uniqExact(id) FROM {q}").result_rows[0][0]
        inserts = ch.query(f"SELECT count() - uniqExact(id) FROM `{database}`.`{table}_changes` WHERE _op = 'c'")
        if twice:
            problems.append(f"{table}: {twice} key(s) twice among the current rows")
        if inserts.result_rows[0][0]:
            problems.append(f"{table}: {inserts.result_rows[0][0]} insert(s) twice in the change log")
    events = f"FROM events.domain_events FINAL WHERE source = '{source}'"
    doubled = ch.query(f"SELECT count() - uniqExact(event_id) {events}").result_rows[0][0]
    if doubled:
        problems.append(f"{doubled} domain event(s) stored twice")
    per_table = dict(ch.query(f"SELECT source_table, count() {events} AND op != 'r' GROUP BY source_table").result_rows)
    for table in tables:
        changes = ch.query(f"SELECT count() FROM `{database}`.`{table}_changes` WHERE _op != 'r'").result_rows[0][0]
        stored = next((n for t, n in per_table.items() if str(t).endswith(table)), 0)
        if stored != changes:
            problems.append(f"{table}: {changes} change(s) in the log but {stored} domain event(s)")
    return problems
