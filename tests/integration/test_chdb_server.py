"""The ClickHouse-compatible HTTP endpoint over embedded chDB, driven by real clients.

Each test starts its own server on a free loopback port over a fresh data directory. chDB hosts
one engine path per process, so every fixture stops its server (and closes in-process chDB
clients) before the next test opens another directory.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import clickhouse_connect
import lz4.frame
import pytest
from backports import zstd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from cdc.adapters.clickhouse import ClickHouseWarehouse, open_embedded
from cdc.embedded.chdb_body import decode_body
from cdc.embedded.chdb_http import split_insert
from cdc.embedded.chdb_server import ChdbHttpServer
from cdc.embedded.endpoint import chdb_dsn, clear_endpoint, find_endpoint, warehouse_data_dir, write_endpoint
from cdc.errors import StackError, WarehouseError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def server(state_dir: Path) -> Iterator[ChdbHttpServer]:
    srv = ChdbHttpServer(warehouse_data_dir(state_dir))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: ChdbHttpServer) -> Iterator[Client]:
    ch = clickhouse_connect.get_client(host=server.host, port=server.port)
    ch.command("CREATE DATABASE shop")
    ch.command("CREATE TABLE shop.orders (id UInt64, name String, at DateTime64(3)) ENGINE = MergeTree ORDER BY id")
    try:
        yield ch
    finally:
        ch.close()


def curl(url: str, *args: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Run curl (the body, if any, on stdin); return (status, lower-cased headers, body)."""
    cmd = ["curl", "-sS", "-D", "-", *args, *(["--data-binary", "@-"] if data is not None else []), url]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=30).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def q(server: ChdbHttpServer, **params: str) -> str:
    return f"{server.url}/?{urlencode(params)}"


ROWS = [[1, "ann", dt.datetime(2024, 1, 1, 12, 0)], [2, "bob", dt.datetime(2024, 1, 2, 13, 30, 0, 500000)]]


# --- clickhouse-connect over HTTP -------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False, "lz4", "zstd", "gzip"])  # the client has no deflate writer
def test_insert_and_query_roundtrip_with_each_compression(server: ChdbHttpServer, compress: bool | str) -> None:
    ch = clickhouse_connect.get_client(host=server.host, port=server.port, compress=compress)
    ch.command("CREATE TABLE t (id UInt64, name String, at DateTime64(3)) ENGINE = MergeTree ORDER BY id")
    many = [[i, f"n{i}", dt.datetime(2024, 1, 1)] for i in range(3, 50_003)]
    summary = ch.insert("t", ROWS + many, column_names=["id", "name", "at"])
    assert summary.written_rows == 50_002
    assert ch.query("SELECT id, name, at FROM t WHERE id <= 2 ORDER BY id").result_rows == [tuple(r) for r in ROWS]
    assert ch.query("SELECT count(), sum(id) FROM t").result_rows == [(50_002, sum(range(1, 50_003)))]


def test_query_parameters_and_settings_apply_per_request(client: Client) -> None:
    client.insert("shop.orders", ROWS, column_names=["id", "name", "at"])
    result = client.query(
        "SELECT name, getSetting('max_threads') FROM shop.orders WHERE id = {id:UInt64}",
        parameters={"id": 2},
        settings={"max_threads": 3},
    )
    assert result.result_rows == [("bob", 3)]
    assert client.query("SELECT getSetting('max_threads')").result_rows != [(3,)]  # did not leak
    assert client.query("SELECT %(a)s || %(b)s", parameters={"a": "x'y", "b": "\tz"}).result_rows == [("x'y\tz",)]
    assert client.query("SELECT {s:String}", parameters={"s": "a\tb'c"}).result_rows == [("a\tb'c",)]


def test_form_encoded_query_and_parameters(server: ChdbHttpServer) -> None:
    """clickhouse-connect sends long queries and their bindings as multipart/form-data."""
    ch = clickhouse_connect.get_client(host=server.host, port=server.port, form_encode_query_params=True)
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(5000)]
    rows = ch.query(
        "SELECT length({ids:Array(UUID)}), {name:String} SETTINGS max_threads = 1",
        parameters={"ids": ids, "name": "pizza"},
    ).result_rows
    assert rows == [(5000, "pizza")]
    ch.close()


def test_database_parameter_selects_default_database(server: ChdbHttpServer, client: Client) -> None:
    shop = clickhouse_connect.get_client(host=server.host, port=server.port, database="shop")
    shop.insert("orders", ROWS, column_names=["id", "name", "at"])
    assert shop.command("SELECT currentDatabase()") == "shop"
    assert shop.query("SELECT count() FROM orders").result_rows == [(2,)]
    status, _, body = curl(q(server, query="SELECT count() FROM orders"), "-H", "X-ClickHouse-Database: shop")
    assert (status, body) == (200, b"2\n")


def test_errors_surface_as_database_error_with_code(client: Client) -> None:
    with pytest.raises(DatabaseError) as unknown_table:
        client.query("SELECT * FROM shop.missing")
    assert unknown_table.value.code == 60
    with pytest.raises(DatabaseError) as syntax:
        client.command("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError) as bad_setting:
        client.query("SELECT 1", settings={"no_such_setting_at_all": 1})
    assert bad_setting.value.code == 115


def test_streaming_large_result_and_mid_stream_error(client: Client) -> None:
    with client.query_row_block_stream("SELECT number FROM numbers(3000000)") as stream:
        assert sum(len(block) for block in stream) == 3_000_000
    failing = "SELECT number, throwIf(number = 2000000) FROM numbers(3000000)"
    with pytest.raises(DatabaseError) as mid_stream, client.query_row_block_stream(failing) as stream:
        for _ in stream:
            pass
    assert mid_stream.value.code == 395
    assert client.command("SELECT 7") == 7  # the server is still serving


def test_concurrent_clients(server: ChdbHttpServer, client: Client) -> None:
    errors: list[BaseException] = []
    sums: list[int] = []

    def work(worker: int) -> None:
        try:
            ch = clickhouse_connect.get_client(host=server.host, port=server.port)
            for i in range(5):
                rows = [[worker * 1000 + i * 100 + k, f"w{worker}", dt.datetime(2024, 1, 1)] for k in range(100)]
                ch.insert("shop.orders", rows, column_names=["id", "name", "at"])
                sums.append(int(str(ch.command(f"SELECT sum(number) FROM numbers({1_000_000 + worker})"))))
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(sums) == sorted(n * (n - 1) // 2 for n in (1_000_000 + w for w in range(8)) for _ in range(5))
    assert client.query("SELECT count(), uniqExact(id) FROM shop.orders").result_rows == [(4000, 4000)]


def test_client_disconnecting_mid_stream_does_not_block_others(server: ChdbHttpServer, client: Client) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/", body=b"SELECT number FROM numbers(500000000) FORMAT TSV")
    response = conn.getresponse()
    assert response.status == 200
    assert response.read(64).startswith(b"0\n1\n2\n")
    conn.close()  # walk away mid-stream
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(client.command("SELECT 41 + 1")))
    worker.start()
    worker.join(timeout=10)
    assert results == [42]


@pytest.mark.parametrize("fmt", ["TSVWithNames", "CSV", "JSONEachRow", "JSON", "Values", "Native", "Parquet", "Pretty"])
def test_output_formats_stream_and_buffer_alike(server: ChdbHttpServer, client: Client, fmt: str) -> None:
    sql = "SELECT number, toString(number) AS s FROM numbers(300000)"
    buffered = client.raw_query(sql, fmt=fmt)  # wait_end_of_query=1: one engine call
    status, headers, streamed = curl(q(server, query=f"{sql} FORMAT {fmt}"))  # GET, no wait: streamed if it can
    assert (status, headers["x-clickhouse-format"]) == (200, fmt)
    assert len(buffered) > 100_000
    if fmt == "JSON":  # its statistics differ by timing
        assert json.loads(streamed)["data"] == json.loads(buffered)["data"]
    else:
        assert streamed == buffered


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd"])
@pytest.mark.parametrize(
    ("fmt", "payload"),
    [("CSV", b"10,ten,2024-01-01 00:00:00\n"), ("JSONEachRow", b'{"id":10,"name":"ten","at":"2024-01-01"}\n'),
     ("TSVWithNames", b"id\tname\tat\n10\tten\t2024-01-01 00:00:00\n"), ("Values", b"(10,'ten','2024-01-01')")],
)  # fmt: skip
def test_raw_insert_input_formats(client: Client, fmt: str, payload: bytes, compression: str | None) -> None:
    codecs = {None: bytes, "gzip": gzip.compress, "lz4": lz4.frame.compress, "zstd": zstd.compress}
    client.raw_insert(
        "shop.orders", ["id", "name", "at"], codecs[compression](payload), fmt=fmt, compression=compression
    )
    assert client.query("SELECT id, name FROM shop.orders").result_rows == [(10, "ten")]


# --- curl ------------------------------------------------------------------------------------


def test_ping_and_root(server: ChdbHttpServer) -> None:
    assert curl(f"{server.url}/ping")[::2] == (200, b"Ok.\n")
    assert curl(f"{server.url}/")[::2] == (200, b"Ok.\n")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("HEAD", "/ping")
    response = conn.getresponse()
    assert (response.status, response.getheader("Content-Length"), response.read()) == (200, "4", b"")
    conn.close()


def test_curl_select_json_and_headers(server: ChdbHttpServer) -> None:
    status, headers, body = curl(q(server, query="SELECT 1 AS one, 'a' AS s FORMAT JSON"))
    assert status == 200
    doc = json.loads(body)
    assert doc["data"] == [{"one": 1, "s": "a"}]
    assert headers["x-clickhouse-format"] == "JSON"
    assert headers["content-type"].startswith("application/json")
    assert headers["x-clickhouse-timezone"]
    assert headers["x-clickhouse-query-id"]
    assert json.loads(headers["x-clickhouse-summary"])["read_rows"] == "1"
    _, headers, body = curl(q(server, query="SELECT 2 AS two", default_format="JSONEachRow", query_id="my-q"))
    assert (body, headers["x-clickhouse-query-id"]) == (b'{"two":2}\n', "my-q")


def test_curl_query_in_body_and_parameters(server: ChdbHttpServer) -> None:
    assert curl(f"{server.url}/?param_n=21", data=b"SELECT {n:UInt8} * 2")[2] == b"42\n"
    assert curl(q(server, query="SELECT"), data=b" 5 + 5")[2] == b"10\n"  # query param + body
    assert curl(f"{server.url}/?user=someone&password=secret", data=b"SELECT 3")[2] == b"3\n"
    assert curl(server.url, "-u", "default:secret", data=b"SELECT 4")[2] == b"4\n"


def test_curl_insert_csv_with_body(server: ChdbHttpServer, client: Client) -> None:
    csv = b"1,ann,2024-01-01 12:00:00\n2,bob,2024-01-02 13:30:00\n"
    status, headers, _ = curl(q(server, query="INSERT INTO shop.orders FORMAT CSV"), data=csv)
    assert status == 200
    assert json.loads(headers["x-clickhouse-summary"])["written_rows"] == "2"
    body = b"INSERT INTO shop.orders (id, name, at) FORMAT TSV\n3\tcid\t2024-01-03 00:00:00\n"
    assert curl(server.url, data=body)[0] == 200
    gz = gzip.compress(b'{"id":4,"name":"dee","at":"2024-01-04 00:00:00"}\n')
    query = q(server, query="INSERT INTO shop.orders FORMAT JSONEachRow")
    assert curl(query, "-H", "Content-Encoding: gzip", data=gz)[0] == 200
    deflated = zlib.compress(b"INSERT INTO shop.orders FORMAT CSV\n6,fay,2024-01-06 00:00:00\n")
    assert curl(server.url, "-H", "Content-Encoding: deflate", data=deflated)[0] == 200
    assert curl(server.url, data=b"INSERT INTO shop.orders (id, name, at) VALUES (5, 'eve', now())")[0] == 200
    assert client.query("SELECT id, name FROM shop.orders ORDER BY id").result_rows == [
        (1, "ann"), (2, "bob"), (3, "cid"), (4, "dee"), (5, "eve"), (6, "fay"),
    ]  # fmt: skip


def test_curl_errors_have_clickhouse_status_and_code(server: ChdbHttpServer) -> None:
    status, headers, body = curl(q(server, query="SELECT * FROM nowhere.t"))
    assert (status, headers["x-clickhouse-exception-code"]) == (404, "81")
    assert body.startswith(b"Code: 81. DB::Exception:") and b"UNKNOWN_DATABASE" in body
    status, headers, _ = curl(server.url, "--data-binary", "SELEC 1")
    assert (status, headers["x-clickhouse-exception-code"]) == (400, "62")
    status, headers, _ = curl(q(server, query="CREATE TABLE t (a UInt8) ENGINE = Memory"))  # GET is read-only
    assert headers["x-clickhouse-exception-code"] == "164"
    assert status == 500


# --- the store belongs to one process --------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )


def test_second_process_cannot_open_store_but_finds_the_endpoint(server: ChdbHttpServer, state_dir: Path) -> None:
    data_dir = warehouse_data_dir(state_dir)
    raw = run_python(f"import chdb; chdb.connect({str(data_dir)!r})")
    assert raw.returncode != 0
    assert "Cannot lock file" in raw.stderr and "Another server instance" in raw.stderr
    write_endpoint(state_dir, server.url)
    probe = run_python(f"""
        from pathlib import Path
        import clickhouse_connect
        from cdc.embedded.chdb_server import ChdbHttpServer
        from cdc.embedded.endpoint import find_endpoint
        from cdc.errors import StackError, WarehouseError
        try:
            ChdbHttpServer(Path({str(data_dir)!r})).start()
        except StackError as e:
            print("STACK:", e)
        url = find_endpoint(Path({str(state_dir)!r}))
        host, port = url.rsplit("/", 1)[1].split(":")
        ch = clickhouse_connect.get_client(host=host, port=int(port))
        ch.command("CREATE TABLE from_child (a UInt8) ENGINE = MergeTree ORDER BY a")
        ch.insert("from_child", [[7]])
        print("URL:", url)
    """)
    assert probe.returncode == 0, probe.stderr
    assert f"URL: {server.url}" in probe.stdout
    assert "is locked by another process" in probe.stdout
    ch = clickhouse_connect.get_client(host=server.host, port=server.port)
    assert ch.command("SELECT a FROM from_child") == 7


def test_port_in_use_raises_stack_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StackError, match="cannot serve chDB on 127.0.0.1"):
            ChdbHttpServer(tmp_path / "data", port=taken.getsockname()[1]).start()


def test_in_process_chdb_client_coexists_with_server(server: ChdbHttpServer, client: Client) -> None:
    embedded = clickhouse_connect.get_client(dsn=chdb_dsn(server.data_dir))
    try:
        embedded.insert("shop.orders", ROWS[:1], column_names=["id", "name", "at"])
        client.insert("shop.orders", ROWS[1:], column_names=["id", "name", "at"])
        expected = [(1, "ann"), (2, "bob")]
        assert client.query("SELECT id, name FROM shop.orders ORDER BY id").result_rows == expected
        assert embedded.query("SELECT id, name FROM shop.orders ORDER BY id").result_rows == expected
    finally:
        embedded.close()


def test_insert_file_reads_a_file_in_process_and_streams_it_over_http(
    server: ChdbHttpServer, client: Client, state_dir: Path, tmp_path: Path
) -> None:
    """The copy path's inserts (cdc.mirror.initial_load): a file of 200,000 TSV rows, escapes included,
    as one insert through either transport, with settings."""
    path = tmp_path / "rows.tsv"
    rows = 200_000
    with path.open("wb") as out:
        for i in range(rows):
            out.write(f"{i}\tname {i}\\twith a tab's \\\\ escapes\t2026-12-06 10:00:00.123\n".encode())
    over_http = ClickHouseWarehouse(client, "http")
    in_process = open_embedded(state_dir)
    try:
        for warehouse, table in ((over_http, "orders"), (in_process, "orders_copy")):
            client.command(f"CREATE TABLE IF NOT EXISTS shop.{table} AS shop.orders")
            warehouse.insert_file("shop", table, ["id", "name", "at"], path, "TabSeparated", {"optimize_on_insert": 0})
            got = client.query(f"SELECT count(), uniqExact(id), any(name) FROM shop.{table} WHERE id = 7").result_rows
            assert got == [(1, 1, "name 7\twith a tab's \\ escapes")]
            assert client.query(f"SELECT count(), sum(id) FROM shop.{table}").result_rows == [
                (rows, rows * (rows - 1) // 2)
            ]
        with pytest.raises(WarehouseError, match="inserting into shop.orders"):
            in_process.insert_file("shop", "orders", ["id", "nope"], path, "TabSeparated")
    finally:
        in_process.close()


# --- endpoint discovery and pure helpers -----------------------------------------------------


def test_endpoint_file_lifecycle(server: ChdbHttpServer, state_dir: Path) -> None:
    assert find_endpoint(state_dir) is None
    write_endpoint(state_dir, server.url)
    record = json.loads((state_dir / "clickhouse" / "endpoint.json").read_text())
    assert record == {"url": server.url, "pid": os.getpid()}
    assert find_endpoint(state_dir) == server.url
    clear_endpoint(state_dir)
    assert find_endpoint(state_dir) is None


def test_stale_endpoint_files_are_removed(state_dir: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_endpoint(state_dir, "http://127.0.0.1:9")
    path = state_dir / "clickhouse" / "endpoint.json"
    path.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": int(dead.stdout)}))
    assert find_endpoint(state_dir) is None and not path.exists()  # process gone
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    write_endpoint(state_dir, f"http://127.0.0.1:{free}")  # our pid lives, nothing listens
    assert find_endpoint(state_dir) is None and not path.exists()


def test_chdb_dsn_is_resolved_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert chdb_dsn(tmp_path / "link" / ".") == f"chdb://{os.path.realpath(tmp_path / 'real')}"
    assert warehouse_data_dir(tmp_path) == tmp_path / "clickhouse" / "data"


def test_body_decoding_and_insert_split() -> None:
    frames = [zlib.compress(b"abc"), zlib.compress(b"def")]
    assert b"".join(decode_body(iter([b"".join(frames)]), "deflate")) == b"abcdef"
    assert split_insert(b"INSERT INTO t (a) FORMAT Native\n\x01\x02") == ("INSERT INTO t (a)", "Native", 32)
    assert split_insert(b'INSERT INTO t FORMAT JSONEachRow {"a":1}') == ("INSERT INTO t", "JSONEachRow", 33)
    assert split_insert(b"INSERT INTO t VALUES ('FORMAT CSV')") is None
    assert split_insert(b"SELECT 1 FORMAT CSV\n") is None
