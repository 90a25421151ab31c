"""The status server over real HTTP, and `cdc status` against it (only the snapshot is made up)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.cli import main
from cdc.status import GIB, SourceStatus, StatusSnapshot, TopicLag, utc_now_iso
from cdc.status.server import MetricsServer, clear_status_url, find_status_url, write_status_url


def _snapshot_dict(state_dir: Path, retained: int = 1024) -> dict[str, Any]:
    source = SourceStatus(
        name="shop",
        dsn="postgresql://cdc:***@127.0.0.1/shop",
        slot="cdc_shop",
        slot_active=True,
        retained_wal_bytes=retained,
        captured=10,
        applied=10,
        rows_per_s_1m=1.5,
        freshness_s=0.2,
        events_stored=4,
        dead_letters=0,
        topics=(TopicLag("shop.public.orders", 0, 10, 10),),
    )
    return StatusSnapshot(
        generated_at=utc_now_iso(),
        state_dir=str(state_dir),
        uptime_s=5.0,
        clickhouse_url="http://127.0.0.1:1",
        kafka_bootstrap="127.0.0.1:2",
        sources=(source,),
        dead_letters=0,
    ).to_dict()


class Provider:
    """A snapshot callable the test can switch between healthy, warning and failing."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.calls = 0
        self.fail: str | None = None
        self.retained = 1024

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise RuntimeError(self.fail)
        return _snapshot_dict(self.state_dir, self.retained)


@pytest.fixture
def provider(tmp_path: Path) -> Provider:
    return Provider(tmp_path / "state")


@pytest.fixture
def server(provider: Provider) -> Iterator[MetricsServer]:
    srv = MetricsServer(0, provider, cache_s=0.0)
    srv.start()
    write_status_url(provider.state_dir, srv.url)
    try:
        yield srv
    finally:
        clear_status_url(provider.state_dir, srv.url)
        srv.stop()


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_metrics_status_and_healthz(server: MetricsServer) -> None:
    code, ctype, body = _get(f"{server.url}/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "# TYPE cdc_slot_retained_wal_bytes gauge" in body
    assert 'cdc_slot_retained_wal_bytes{source="shop",slot="cdc_shop"} 1024' in body
    assert "cdc_up 1" in body
    code, ctype, body = _get(f"{server.url}/status")
    assert code == 200 and ctype == "application/json"
    data = json.loads(body)
    assert data["version"] == 1 and data["sources"][0]["slot"] == "cdc_shop" and data["warnings"] == []
    assert _get(f"{server.url}/healthz")[::2] == (200, "ok\n")
    assert _get(f"{server.url}/nope")[0] == 404


def test_warnings_are_added_by_the_server(server: MetricsServer, provider: Provider) -> None:
    provider.retained = 2 * GIB
    data = json.loads(_get(f"{server.url}/status")[2])
    assert len(data["warnings"]) == 1 and "pg_drop_replication_slot" in data["warnings"][0]
    assert "cdc_warnings 1" in _get(f"{server.url}/metrics")[2]


def test_a_failing_snapshot_answers_500_and_the_server_goes_on(server: MetricsServer, provider: Provider) -> None:
    provider.fail = "ClickHouse is down"
    for path in ("/metrics", "/status"):
        code, _, body = _get(f"{server.url}{path}")
        assert code == 500 and "RuntimeError: ClickHouse is down" in body
    assert _get(f"{server.url}/healthz")[0] == 200
    provider.fail = None
    assert _get(f"{server.url}/metrics")[0] == 200


def test_concurrent_requests_share_one_cached_snapshot(provider: Provider) -> None:
    def slow() -> dict[str, Any]:
        time.sleep(0.3)
        return provider()

    srv = MetricsServer(0, slow, cache_s=5.0)
    srv.start()
    try:
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(_get(f"{srv.url}/metrics")[0])) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 8 and provider.calls == 1
    finally:
        srv.stop()


def test_status_url_file_is_found_only_while_the_server_answers(provider: Provider) -> None:
    state_dir = provider.state_dir
    assert find_status_url(state_dir) is None
    srv = MetricsServer(0, provider)
    srv.start()
    write_status_url(state_dir, srv.url)
    assert find_status_url(state_dir) == srv.url
    srv.stop()
    assert find_status_url(state_dir) is None
    assert not (state_dir / "status.url").exists()  # stale: removed


def _cdc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cdc_status_exit_codes_and_json(
    server: MetricsServer, provider: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(provider.state_dir)
    code, out, _ = _cdc(capsys, "--state-dir", state)
    assert code == 0 and "source shop" in out and out.endswith("no warnings\n")
    code, out, _ = _cdc(capsys, "--state-dir", state, "--json")
    assert code == 0 and json.loads(out)["sources"][0]["name"] == "shop"
    provider.retained = 2 * GIB
    code, out, _ = _cdc(capsys, "--state-dir", state)
    assert code == 1 and "warnings (1):" in out and "pg_drop_replication_slot" in out
    code, out, _ = _cdc(capsys, "--state-dir", state, "--json")
    assert code == 1 and len(json.loads(out)["warnings"]) == 1
    provider.fail = "PostgreSQL refused"
    code, out, err = _cdc(capsys, "--state-dir", state)
    assert code == 2 and out == "" and "PostgreSQL refused" in err


def test_cdc_status_without_a_bridge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDC_STATE_DIR", raising=False)
    code, out, err = _cdc(capsys, "--state-dir", str(tmp_path / "nothing"))
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error: no bridge is running on state dir") and "cdc run" in line and "--state-dir" in line


def test_control_routes_take_json_and_answer_json(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []

    def action(method: str, body: Any) -> tuple[int, Any]:
        seen.append((method, body))
        return (202, {"started": body["table"]}) if method == "POST" else (200, [{"table": "t"}])

    server = MetricsServer(0, Provider(tmp_path), actions={"/resync": action})
    server.start()
    try:
        post = urllib.request.Request(f"{server.url}/resync", data=b'{"table": "public.t"}', method="POST")
        with urllib.request.urlopen(post, timeout=5) as r:
            assert (r.status, json.loads(r.read())) == (202, {"started": "public.t"})
        with urllib.request.urlopen(f"{server.url}/resync", timeout=5) as r:
            assert json.loads(r.read()) == [{"table": "t"}]
        assert seen == [("POST", {"table": "public.t"}), ("GET", None)]
        bad = urllib.request.Request(f"{server.url}/resync", data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=5)
        assert e.value.code == 400
        nowhere = urllib.request.Request(f"{server.url}/nope", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(nowhere, timeout=5)
        assert e.value.code == 404
    finally:
        server.stop()
