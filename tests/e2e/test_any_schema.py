"""A schema nobody here designed, on the real stack (PostgreSQL -> Debezium -> Tansu -> chDB), compared value
by value: odd names, every type at its edges (snapshot and stream), unchanged TOASTed values, TRUNCATE, a
partitioned table with a partition created while the bridge runs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest

from cdc.adapters.clickhouse import connect_warehouse
from cdc.adapters.postgres import PostgresSource
from cdc.domain.changes import TableRef, TableSchema
from cdc.mirror import copying
from cdc.mirror.copy_sql import copyable
from cdc.mirror.copying import copy_rows
from cdc.mirror.sink import ClickHouseMirrorSink
from tests.e2e.conftest import BridgeProcess, sql, start_bridge, status_json
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

UNICODE = "t_" + "ü" * 30 + "x"  # 63 bytes: PostgreSQL's longest name
SCHEMA = f'''
CREATE EXTENSION IF NOT EXISTS hstore; CREATE EXTENSION IF NOT EXISTS ltree;
CREATE SCHEMA sales; CREATE SCHEMA "Odd.Schema";
CREATE TABLE sales."Order Items" (id int PRIMARY KEY, v text);
CREATE TABLE sales."Order_Items" (id int PRIMARY KEY, v text);  -- Debezium names both topics alike
CREATE TABLE "Odd.Schema"."a.b" (id int PRIMARY KEY, "Mixed Case" text, "from" int);
CREATE TABLE "Orders" (id int PRIMARY KEY, v text);
CREATE TABLE orders (id int PRIMARY KEY, v text);
CREATE TABLE "select" ("from" int PRIMARY KEY, "where" text);
CREATE TABLE "{UNICODE}" (id int PRIMARY KEY, "ключ" text);
CREATE TABLE "say ""hi""" (id int PRIMARY KEY, v text);
CREATE TABLE clash (id int PRIMARY KEY, _version int);  -- a column named like the mirror columns: left out
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN amount AS numeric(8,2); CREATE DOMAIN day AS date;
CREATE TABLE edge (id int PRIMARY KEY, n numeric(10,2), nu numeric, f4 real, f8 float8, d date, ts timestamp,
  tstz timestamptz, t time, tz timetz, iv interval, m money, ip inet, cid cidr, mac macaddr, b bit(4), vb varbit,
  r int4range, tr tstzrange, h hstore, lt ltree, pt point, bx box, e mood, dm posint,
  g int GENERATED ALWAYS AS (id * 2) STORED, na numeric(6,2)[], da date[], ia int[], ea mood[], ta text[], j jsonb,
  fa float8[], ipa inet[], dn amount, dd day);
CREATE TABLE toasted (id int PRIMARY KEY, k int, t text, j jsonb, ia int[], la bigint[], da date[], ta text[],
  ua uuid[], h hstore);
CREATE TABLE blobs (id int PRIMARY KEY, k int, b bytea, na numeric[]);
ALTER TABLE blobs REPLICA IDENTITY FULL;  -- Debezium sends these types' unchanged values as NULL otherwise
CREATE TABLE blobs_default (id int PRIMARY KEY, b bytea);
CREATE TABLE readings (id int, at date, v numeric(10,2), PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
'''
EDGE_ROWS = [
    "(1, 'NaN', 'NaN', 'NaN', 'Infinity', 'infinity', 'infinity', 'infinity', '24:00', '12:00+03',"
    " '1 year 2 mons 3 days 04:05:06.789', 12.34, '10.0.0.1/8', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101',"
    " '[1,5)', '[2024-01-01,infinity)', 'a=>1,b=>NULL', 'a.b.c', '(1,2)', '((0,0),(1,1))', 'happy', 5,"
    """ '{1.5,NULL}', '{2024-01-01,NULL}', '{1,NULL,3}', '{happy,sad}', '{"x y","",NULL}', '{"k": [1, 2]}',"""
    " '{1.5,NaN,Infinity,NULL}', '{10.0.0.1/8,::1}', 'NaN', 'infinity')",
    "(2, 12345678.99, '1e-30', '-Infinity', '-Infinity', '-infinity', '-infinity', '-infinity', '00:00', '00:00-11',"
    " '-3 days', -0.01, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', B'0000', B'1', 'empty', 'empty', '', '',"
    " '(-1.5,2e10)', '((1,1),(0,0))', 'sad', 1, '{}', '{}', '{}', '{}', '{}', 'null', '{}', '{}', 1.25, '-infinity')",
    "(3, 0, 'Infinity', 3.4e38, 1e308, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00',"
    " '23:59:59.999999', '23:59:59.999999+14', '6 mons', 92233720368547758.07, '0.0.0.0', '0.0.0.0/0',"
    " '00:00:00:00:00:00', B'1111', B'1100', '(,)', '(,)', 'x=>\"a b\"', 'z', '(0,0)', '((0,0),(0,0))', 'happy',"
    " 2147483647, NULL, '{9999-12-31,0001-01-01}', NULL, NULL, NULL, '[1.5e300, \"\\u00e9\"]', NULL, NULL, NULL,"
    " '0001-01-01')",
    "(4, -99999999.99, '-Infinity', NULL, NULL, '9999-12-31', '9999-12-31 23:59:59.999999',"
    " '9999-12-31 23:59:59.999999+00', NULL, NULL, NULL, -92233720368547758.08, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]
EDGE_COLUMNS = (
    "id, n, nu, f4, f8, d, ts, tstz, t, tz, iv, m, ip, cid, mac, b, vb, r, tr, h, lt, pt, bx, e, dm, na, da, ia, ea,"
    " ta, j, fa, ipa, dn, dd"
)
BIG = "(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 400) g)"  # 12.8 kB: out of line
TOASTED_ROW = f"""INSERT INTO toasted SELECT {{id}}, 0, {BIG}, jsonb_build_object('k', {BIG}),
  array(SELECT (random() * 1e9)::int FROM generate_series(1, 3000)),
  array(SELECT (random() * 1e18)::bigint FROM generate_series(1, 3000)),
  array(SELECT date '2000-01-01' + (random() * 9000)::int FROM generate_series(1, 3000)),
  array(SELECT md5(g::text) FROM generate_series(1, 600) g),
  array(SELECT gen_random_uuid() FROM generate_series(1, 600)),
  hstore(array(SELECT md5(g::text) FROM generate_series(1, 600) g),
         array(SELECT md5(random()::text) FROM generate_series(1, 600)))"""
BLOB_ROW = f"""INSERT INTO blobs SELECT {{id}}, 0, decode({BIG}, 'hex'),
  array(SELECT (random() * 1e6)::numeric(12, 3) FROM generate_series(1, 3000))"""

# per column: the PostgreSQL expression, the ClickHouse expression, and how both are made comparable
Norm = Callable[[Any], Any]
_FLOATS = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _special(c: str, value: str) -> str:
    return f"if(mapContains(_special, '{c}'), _special['{c}'], {value})"


def _null_array(c: str) -> str:
    """A NULL array reads [] in ClickHouse (arrays cannot be NULL) and `_special` says 'NULL'."""
    return f"if(_special['{c}'] = 'NULL', NULL, toJSONString({c}))"


_ISO_DURATION = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)W)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?"
)


def _duration(v: Any) -> Any:
    """Durations of one meaning compare equal (Debezium writes every ISO 8601 field, PostgreSQL the non-zero ones)."""
    if v is None:
        return None
    m = _ISO_DURATION.fullmatch(v)
    assert m, v
    return tuple(float(x or 0) for x in m.groups())


def _float(v: Any) -> Any:
    if v is None:
        return None
    f = float(v)
    return "nan" if math.isnan(f) else f"{f:.6g}"


def _json(v: Any) -> Any:
    return None if v is None else json.loads(v)


def _numbers(v: Any) -> Any:
    if v is None:
        return None
    if v.startswith("{"):  # Debezium's point: {"x": 1.0, "y": 2.0, "wkb": ..., "srid": null}
        doc = json.loads(v)
        return [float(doc["x"]), float(doc["y"])]
    return [float(x) for x in _FLOATS.findall(v)]


def _array(v: Any) -> Any:
    """Elements that read as numbers compare as numbers (numeric[] unbounded is Array(String) in ClickHouse)."""
    if v is None:
        return None
    return [_number(x) for x in json.loads(v)]


def _number(x: Any) -> Any:
    try:
        return str(Decimal(str(x)).normalize()) if isinstance(x, (int, float, str)) else x
    except ArithmeticError:
        return x


def _same(v: Any) -> Any:
    return v


EDGE: dict[str, tuple[str, str, Norm]] = {
    "n": ("CASE WHEN n = 'NaN' THEN 'NaN' ELSE trim_scale(n)::text END", _special("n", "toString(n)"), _same),
    "nu": ("nu::text", "nu", _same),
    "f4": ("f4::text", "toString(f4)", _float),
    "f8": ("f8::text", "toString(f8)", _float),
    "d": ("d::text", _special("d", "toString(d)"), _same),
    "ts": (
        "CASE WHEN isfinite(ts) THEN to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US') ELSE ts::text END",
        _special("ts", "formatDateTime(ts, '%Y-%m-%d %H:%i:%S.%f')"),
        _same,
    ),
    "tstz": (
        "CASE WHEN isfinite(tstz) THEN to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        " ELSE tstz::text END",
        _special("tstz", "formatDateTime(tstz, '%Y-%m-%d %H:%i:%S.%f')"),
        _same,
    ),
    "t": ("(extract(epoch FROM t) * 1000000)::bigint::text", "toString(t)", _same),
    "tz": ("(tz AT TIME ZONE 'UTC')::text", "replaceOne(tz, 'Z', '+00')", _same),
    "iv": ("iv::text", "iv", _duration),
    "m": ("trim_scale(m::numeric)::text", "toString(m)", _same),
    # format() uses each type's output function (inet::text would add /32); it reads NULL as ''
    **{
        c: (f"CASE WHEN {c} IS NOT NULL THEN format('%s', {c}) END", c, _same)
        for c in ("ip", "cid", "mac", "b", "vb", "r", "tr", "lt")
    },
    "h": ("hstore_to_json(h)::text", "h", _json),
    "pt": ("pt::text", "pt", _numbers),
    "bx": ("bx::text", "bx", _numbers),
    "e": ("e::text", "toString(e)", _same),
    "dm": ("dm::text", "toString(dm)", _same),
    **{c: (f"array_to_json({c})::text", _null_array(c), _array) for c in ("na", "da", "ia", "ea", "ta")},
    "j": ("j::text", "j", _json),
    "fa": (
        "CASE WHEN fa IS NULL THEN 'NULL' ELSE array_to_string(fa, ',', 'NULL') END",
        "if(_special['fa'] = 'NULL', 'NULL', toString(arrayMap(x -> ifNull(toString(x), 'NULL'), fa)))",
        lambda v: None if v == "NULL" else [None if t == "NULL" else _float(t) for t in re.findall(r"[^\[\]',\s]+", v)],
    ),
    "ipa": ("array_to_json(ipa)::text", _null_array("ipa"), _array),
    "dn": ("CASE WHEN dn = 'NaN' THEN 'NaN' ELSE trim_scale(dn)::text END", _special("dn", "toString(dn)"), _same),
    "dd": ("dd::text", _special("dd", "toString(dd)"), _same),
}
TOASTED: dict[str, tuple[str, str, Norm]] = {
    "k": ("k::text", "toString(k)", _same),
    "t": ("md5(t)", "lower(hex(MD5(t)))", _same),
    "j": ("md5(j::text)", "lower(hex(MD5(j)))", _same),
    **{c: (f"array_to_json({c})::text", _null_array(c), _array) for c in ("ia", "la", "da", "ta", "ua")},
    "h": ("hstore_to_json(h)::text", "h", _json),
}
BLOBS: dict[str, tuple[str, str, Norm]] = {
    "k": ("k::text", "toString(k)", _same),
    "b": ("encode(b, 'hex')", "lower(hex(b))", _same),
    "na": ("array_to_json(na)::text", _null_array("na"), _array),
}


def _rows(dsn: str, ch: Any, pg_table: str, ch_table: str, key: str, cols: dict[str, tuple[str, str, Norm]]) -> Any:
    """(PostgreSQL rows, ClickHouse rows), each normalised column by column, ordered by ``key``."""
    pg_cols = ", ".join(expr for expr, _, _ in cols.values())
    with psycopg.connect(dsn, options="-c TimeZone=UTC -c intervalstyle=iso_8601") as conn:
        pg = conn.execute(f"SELECT {key}, {pg_cols} FROM {pg_table}").fetchall()
    try:
        got = ch.query(f"SELECT {key}, {', '.join(e for _, e, _ in cols.values())} FROM {ch_table}").result_rows
    except Exception as e:  # the mirror is not there yet
        return sorted(_norm(pg, cols)), str(e)
    return sorted(_norm(pg, cols)), sorted(_norm(got, cols))


def _norm(rows: Any, cols: dict[str, tuple[str, str, Norm]]) -> list[tuple[Any, ...]]:
    norms = [n for _, _, n in cols.values()]
    return [(str(r[0]), *(f(v) for f, v in zip(norms, r[1:], strict=True))) for r in rows]


def _equal(
    dsn: str, ch: Any, pg_table: str, ch_table: str, cols: dict[str, tuple[str, str, Norm]], key: str = "id"
) -> bool:
    pg, got = _rows(dsn, ch, pg_table, ch_table, key, cols)
    return bool(pg == got)


def _wait_equal(
    dsn: str, ch: Any, pg_table: str, ch_table: str, cols: dict[str, tuple[str, str, Norm]], key: str = "id"
) -> None:
    """Poll until equal; on timeout fail with the rows that differ, column by column."""
    try:
        wait_until(lambda: _equal(dsn, ch, pg_table, ch_table, cols, key), 150, f"{pg_table} equal in ClickHouse")
    except AssertionError:
        pg, got = _rows(dsn, ch, pg_table, ch_table, key, cols)
        if isinstance(got, str):
            raise AssertionError(f"{pg_table}: {got}") from None
        names = ["id", *cols]
        diff = [
            f"id {a[0]} {name}: postgres {x!r} clickhouse {y!r}"
            for a, b in zip(pg, got, strict=False)
            for name, x, y in zip(names, a, b, strict=True)
            if x != y
        ]
        ids = f"ids {[r[0] for r in pg]} vs {[r[0] for r in got]}"
        raise AssertionError(
            f"{pg_table}: {len(pg)} vs {len(got)} rows, {ids}; " + "; ".join(d[:300] for d in diff[:40])
        ) from None


def test_any_schema_exactly(database: str, state_dir: Path, bridges: list[BridgeProcess]) -> None:
    sql(database, SCHEMA)
    names = ['sales."Order Items"', 'sales."Order_Items"', '"Orders"', "orders", f'"{UNICODE}"', '"say ""hi"""']
    for i, table in enumerate(names):
        sql(database, f"INSERT INTO {table} VALUES ({i}, 'snapshot {i}')")
    sql(database, """INSERT INTO "Odd.Schema"."a.b" VALUES (1, 'M', 7); INSERT INTO "select" VALUES (1, 'w')""")
    sql(database, f"INSERT INTO edge ({EDGE_COLUMNS}) VALUES " + ", ".join(EDGE_ROWS))
    for i in (1, 2):
        sql(database, TOASTED_ROW.format(id=i))
        sql(database, BLOB_ROW.format(id=i))
    sql(database, "INSERT INTO readings SELECT g, date '2024-01-01' + g, g / 4.0 FROM generate_series(1, 50) g")
    db = database.rsplit("/", 1)[1]

    bridge = start_bridge(bridges, state_dir, "--source", database)
    bridge.wait_for_line(r"Mirrored tables")
    ch = bridge.clickhouse()
    out = bridge.output()
    assert "clash is left out: its column(s) _version have names the mirror uses for itself" in out
    assert 'public."say ""hi""" is left out: a double quote in its name' in out
    assert "blobs_default: an update that leaves a large value of b unchanged arrives as NULL" in out
    assert "Traceback" not in out

    # the snapshot done first: TRUNCATE is not MVCC-safe, a snapshot still reading would see the table empty
    def snapshotted() -> bool:
        try:
            counts = ch.query(f"SELECT (SELECT count() FROM `{db}`.edge), (SELECT count() FROM `{db}`.readings),"
                              f" (SELECT count() FROM `{db}`.`sales__Order Items`)").result_rows  # fmt: skip
        except Exception:
            return False
        return counts == [(4, 50, 1)]

    wait_until(snapshotted, 120, "the snapshot in ClickHouse")

    # streaming: the same edge values again (other keys), unchanged TOASTed values, a new partition, TRUNCATE
    streamed = [re.sub(r"^\((\d)", r"(1\1", row) for row in EDGE_ROWS]  # the same values, keys 11-14
    sql(database, f"INSERT INTO edge ({EDGE_COLUMNS}) VALUES " + ", ".join(streamed))
    sql(database, "UPDATE edge SET d = 'infinity', n = 'NaN', f4 = 'NaN' WHERE id = 13")
    sql(database, "UPDATE edge SET id = 21 WHERE id = 12")  # a key change
    sql(database, "DELETE FROM edge WHERE id = 4")
    for i in (3, 4):
        sql(database, TOASTED_ROW.format(id=i))
        sql(database, BLOB_ROW.format(id=i))
    sql(database, "UPDATE toasted SET k = k + 1")  # every TOASTed value unchanged: placeholders in the stream
    sql(database, "UPDATE blobs SET k = k + 1")
    sql(database, "CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    sql(database, "INSERT INTO readings SELECT g, date '2025-01-01' + g, g / 8.0 FROM generate_series(1, 30) g")
    sql(database, "UPDATE readings SET v = v + 100 WHERE id = 3")
    sql(database, """INSERT INTO sales."Order Items" VALUES (10, 'before truncate')""")
    sql(database, """TRUNCATE sales."Order Items"; INSERT INTO sales."Order Items" VALUES (11, 'after')""")
    for i, table in enumerate(names[1:-1], start=1):
        sql(database, f"INSERT INTO {table} VALUES ({100 + i}, 'stream {i}')")
    sql(database, """UPDATE "Odd.Schema"."a.b" SET "Mixed Case" = 'N', "from" = 8""")

    q = f"`{db}`"
    _wait_equal(database, ch, "edge", f"{q}.edge", EDGE)
    _wait_equal(database, ch, "toasted", f"{q}.toasted", TOASTED)
    _wait_equal(database, ch, "blobs", f"{q}.blobs", BLOBS)
    readings = {"at": ("at::text", "toString(at)", _same), "v": ("trim_scale(v)::text", "toString(v)", _same)}
    _wait_equal(database, ch, "readings", f"{q}.readings", readings)
    status = status_json(state_dir)["sources"][0]
    mapping = {t["table"]: (t["topic"], t["clickhouse"]) for t in status["tables"]}

    def mirror(table: str) -> str:
        name = mapping[table][1].split(".", 1)[1]
        return f"{q}.`{name}`"

    plain = {"v": ("v", "v", _same)}
    unicode = {"v": ('"ключ"', "`ключ`", _same)}
    for table, shown in [
        ('sales."Order Items"', "sales.Order Items"),
        ('sales."Order_Items"', "sales.Order_Items"),
        ('"Orders"', "public.Orders"),
        ("orders", "public.orders"),
        (f'"{UNICODE}"', f"public.{UNICODE}"),
    ]:
        cols = unicode if UNICODE in table else plain
        _wait_equal(database, ch, table, mirror(shown), cols)
    odd = {"m": ('"Mixed Case"', "`Mixed Case`", _same), "f": ('"from"::text', "toString(`from`)", _same)}
    _wait_equal(database, ch, '"Odd.Schema"."a.b"', mirror('"Odd.Schema"."a.b"'), odd)
    keyword = {"w": ('"where"', "`where`", _same)}
    _wait_equal(database, ch, '"select"', mirror("public.select"), keyword, key='"from"')

    # the names: Debezium's topics (two tables share one), ClickHouse names kept or hashed when ambiguous or long
    assert mapping["sales.Order Items"] == (f"{db}.sales.Order_Items", f"{db}.sales__Order Items")
    assert mapping["sales.Order_Items"] == (f"{db}.sales.Order_Items", f"{db}.sales__Order_Items")
    assert mapping['"Odd.Schema"."a.b"'] == (f"{db}.Odd.Schema.a.b", f"{db}.Odd.Schema__a.b")
    assert mapping[f"public.{UNICODE}"][1].startswith(f"{db}.t_üü") and mapping[f"public.{UNICODE}"][1][-12:-10] == "__"
    assert "public.clash" not in mapping

    # the generated column is left out (PostgreSQL 15 does not replicate it), the special values are named
    cols = [
        r[0]
        for r in ch.query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'edge'").result_rows
    ]
    assert "g" not in cols and "_special" in cols
    special = dict(ch.query(f"SELECT id, _special FROM {q}.edge WHERE id IN (1, 11, 13)").result_rows)
    assert special[1] == {
        "n": "NaN",
        "d": "infinity",
        "ts": "infinity",
        "tstz": "infinity",
        "dn": "NaN",
        "dd": "infinity",
    }
    assert special[11] == special[1] and special[13]["d"] == "infinity"

    # TRUNCATE: the current state is empty at its position, the log and the events record it
    log = ch.query(f"SELECT _op, count() FROM {q}.`sales__Order Items_changes` GROUP BY _op ORDER BY _op").result_rows
    assert dict(log) == {"c": 2, "r": 1, "t": 1}  # Debezium's snapshot (one table cannot be copied)
    wait_until(
        lambda: (
            ch.query(
                "SELECT count() FROM events.domain_events FINAL WHERE source = {s:String}"
                " AND event_type = 'SalesOrderItemTruncated' AND source_table = 'sales.Order Items'",
                parameters={"s": db},
            ).result_rows
            == [(1,)]
        ),  # fmt: skip
        120,
        "the Truncated event",
    )

    _copy_path_writes_the_same_values(database, state_dir, ch, bridge, readings)
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()


class _Only:
    """The source catalog, showing only the columns the copy path takes (the mirror re-reads it)."""

    def __init__(self, source: PostgresSource, keep: dict[str, tuple[str, ...]]) -> None:
        self.source, self.keep = source, keep

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        found = self.source.table_schema(ref)
        if found is None:
            return None
        return replace(found, columns=tuple(c for c in found.columns if c.name in self.keep[ref.table]))


def _copy_path_writes_the_same_values(
    database: str, state_dir: Path, ch: Any, bridge: BridgeProcess, readings: dict[str, tuple[str, str, Norm]]
) -> None:
    """The initial load's copy path (cdc.mirror.copy_sql): each table, every column it can encode, copied
    into another ClickHouse database through the mirror's own views, equals PostgreSQL value by value."""
    url = bridge.wait_for_line(r"ClickHouse endpoint: (http://\S+)").group(1)
    warehouse = connect_warehouse(url, state_dir)
    source = PostgresSource(database)
    keep: dict[str, tuple[str, ...]] = {}
    tables = {"edge": EDGE, "toasted": TOASTED, "blobs": BLOBS, "readings": readings}
    schemas = []
    for name in tables:
        found = source.table_schema(TableRef("copy_check", "public", name))
        assert found is not None
        keep[name] = tuple(c.name for c in found.columns if copyable(replace(found, columns=(c,))) is None)
        schemas.append(replace(found, columns=tuple(c for c in found.columns if c.name in keep[name])))
    assert set(c.name for c in schemas[0].columns) ^ {"id", *EDGE} == {"b", "vb", "pt"}  # bits, point: not yet
    sink = ClickHouseMirrorSink(warehouse, _Only(source, keep))
    sink.prepare(schemas)
    for schema in schemas:
        with (  # many small files per table: each an insert of its own
            mock.patch.object(copying, "BLOCK_BYTES", 64 << 10),
            mock.patch.object(copying, "FILE_BYTES", 256 << 10),
        ):
            copied = copy_rows(source, warehouse, sink.table(schema.ref))
        assert copied == sql(database, f"SELECT count(*) FROM {schema.ref.table}")[0][0]
        cols = {k: v for k, v in tables[schema.ref.table].items() if k in keep[schema.ref.table]}
        _wait_equal(database, ch, schema.ref.table, f"copy_check.`{schema.ref.table}`", cols)
