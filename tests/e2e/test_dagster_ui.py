"""The Dagster UI of a bridge on a database nobody here designed, looked at in a real browser.

`cdc run --ui` on a small lending library (two schemas, a text key, a composite key), with a projection
module of the user's own (not in this package) named by ``CDC_PROJECTIONS__MODULES``. The test runs the
checks job through Dagster's GraphQL API, waits for the sensor to build the user's report, then drives
headless Chromium (Debian's ``chromium`` + ``chromium-driver``) through the UI: the asset catalog shows the
library's tables and none of the demo's, and a mirror's page shows its passed checks. The lineage graph
is saved as a screenshot (``CDC_SCREENSHOT_DIR`` keeps it; README's picture is one of these).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from cdc.embedded.pg_cluster import EmbeddedPostgres
from tests.e2e.conftest import BridgeProcess, fresh_database, sql, start_bridge
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SCHEMA = """
CREATE SCHEMA lending;
CREATE TABLE books (isbn text PRIMARY KEY, title text NOT NULL, published date, price numeric(8, 2));
CREATE TABLE members (id bigint PRIMARY KEY, name text NOT NULL, joined timestamptz NOT NULL DEFAULT now());
CREATE TABLE lending.loans (member_id bigint, isbn text, lent_on date, returned boolean NOT NULL DEFAULT false,
                            PRIMARY KEY (member_id, isbn, lent_on));
INSERT INTO books VALUES ('978-0-14-044913-6', 'Crime and Punishment', '1866-01-01', 12.50),
                         ('978-0-679-73452-9', 'The Master and Margarita', '1967-01-01', 15.00);
INSERT INTO members (id, name) SELECT g, 'member ' || g FROM generate_series(1, 30) g;
INSERT INTO lending.loans (member_id, isbn, lent_on)
    SELECT g % 7 + 1, CASE WHEN g % 2 = 0 THEN '978-0-14-044913-6' ELSE '978-0-679-73452-9' END,
           DATE '2026-01-01' + g FROM generate_series(1, 40) g;
"""

# the user's own projection module: loans per member, from the generic events of lending.loans
REPORTS = """
from pipelines.projection import Projection, in_scope

EVENTS = "events.domain_events FINAL WHERE source = 'library' AND event_type = 'LendingLoanCreated'"
MEMBER = "JSONExtractInt(payload_latest, 'member_id')"

PROJECTIONS = [
    Projection(
        name="loans_per_member",
        description="How many loans each member has taken.",
        columns=(("member_id", "Int64"), ("loans", "UInt64")),
        key=("member_id",),
        scope="member_id",
        scopes_sql=f"SELECT DISTINCT {MEMBER} AS member_id FROM {EVENTS}"
        " AND stored_at > {lo:DateTime64(6)} AND stored_at <= {hi:DateTime64(6)}",
        rows_sql=f"SELECT {MEMBER} AS member_id, count() AS loans FROM {EVENTS}"
        f" AND {in_scope(MEMBER, 'Int64')} GROUP BY member_id",
        event_types=("LendingLoanCreated",),
    )
]
"""


def graphql(ui: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{ui}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        doc = json.loads(response.read())
    assert "errors" not in doc, doc
    return dict(doc["data"])


def launch(ui: str, job: str) -> str:
    repos = graphql(ui, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    (repo,) = repos["repositoriesOrError"]["nodes"]
    params = {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                           "jobName": job}}  # fmt: skip
    done = graphql(
        ui,
        "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename"
        " ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
        {"p": params},
    )["launchRun"]
    assert done["__typename"] == "LaunchRunSuccess", done
    return str(done["run"]["runId"])


def run_status(ui: str, run_id: str) -> str:
    found = graphql(ui, '{ runOrError(runId: "%s") { ... on Run { status } } }' % run_id)  # noqa: UP031
    return str(found["runOrError"]["status"])


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def skip_welcome(driver: webdriver.Chrome) -> None:
    """Dismiss the "Join the Dagster community" dialog a fresh browser profile gets a moment after a page loads."""
    wait_until(lambda: bool(page_text(driver).strip()), 60, what="the page")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        buttons = driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
        if buttons:
            buttons[0].click()
            return
        time.sleep(0.2)


def latest_check(ui: str, table: str, check: str) -> str:
    """The status of the newest execution of ``check`` on the mirror ``clickhouse/library/<table>``."""
    found = graphql(
        ui,
        "query($k: AssetKeyInput!, $c: String!) { assetCheckExecutions(assetKey: $k, checkName: $c, limit: 1)"
        " { status } }",
        {"k": {"path": ["clickhouse", "library", table]}, "c": check},
    )["assetCheckExecutions"]
    return str(found[0]["status"]) if found else "NONE"


def run_failure(ui: str, job: str) -> str | None:
    """The failure message of the newest failed run of ``job``, if any."""
    runs = graphql(
        ui,
        "query($f: RunsFilter) { runsOrError(filter: $f, limit: 1) { ... on Runs { results { runId } } } }",
        {"f": {"pipelineName": job, "statuses": ["FAILURE"]}},
    )["runsOrError"]["results"]
    if not runs:
        return None
    events = graphql(
        ui,
        "query($r: ID!) { logsForRun(runId: $r) { ... on EventConnection { events { __typename"
        " ... on ExecutionStepFailureEvent { error { message cause { message } } } } } } }",
        {"r": runs[0]["runId"]},
    )["logsForRun"]["events"]
    errors = [e["error"] for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    return " ".join(f"{e['message']} {(e.get('cause') or {}).get('message', '')}" for e in errors)


def test_the_ui_of_a_bridge_on_any_database_shows_its_tables_checks_and_reports(
    pg: EmbeddedPostgres, state_dir: Path, tmp_path: Path, browser: webdriver.Chrome
) -> None:
    dsn = fresh_database(pg, "library")
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            sql(dsn, statement)
    module_dir = tmp_path / "user_code"
    module_dir.mkdir()
    (module_dir / "library_reports.py").write_text(REPORTS)
    env = {
        "CDC_PROJECTIONS__MODULES": "library_reports",
        "CDC_PROJECTIONS__SENSOR_INTERVAL_SECONDS": "5",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(module_dir), os.environ.get("PYTHONPATH")])),
    }
    bridge = BridgeProcess(state_dir, ["run", "--ui", "--source", dsn, "--source-name", "library"], env)
    try:
        ui = bridge.wait_for_line(r"Dagster UI:\s+(http://\S+)", timeout=300).group(1)
        ch = bridge.clickhouse()
        wait_until(lambda: ch.query("SELECT count() FROM library.lending__loans").result_rows[0][0] == 40, 180)

        # the checks job through the API (the schedule would run it within 10 minutes)
        run_id = launch(ui, "checks")
        wait_until(lambda: run_status(ui, run_id) in ("SUCCESS", "FAILURE"), 300, what="the checks run to end")
        # the sensor builds the user's report from the library's events

        def report() -> tuple[int, int] | None:
            try:
                return tuple(ch.query("SELECT count(), sum(loans) FROM reports.loans_per_member").result_rows[0])
            except DatabaseError:  # not built yet
                return None

        wait_until(lambda: report() == (7, 40), 300, what="reports.loans_per_member built by Dagster")

        browser.get(f"{ui}/assets")
        skip_welcome(browser)
        wait_until(lambda: "lending__loans" in page_text(browser), 120, what="the asset catalog")
        text = page_text(browser)
        for name in ("books", "members", "lending__loans", "loans_per_member"):
            assert name in text, text
        for demo in ("customers", "order_items", "revenue_daily_product"):
            assert demo not in text, text

        browser.get(f"{ui}/assets/clickhouse/library/members?view=checks")
        skip_welcome(browser)
        wait_until(lambda: "row_count_matches_postgres" in page_text(browser), 120, what="the mirror's checks")
        wait_until(lambda: "Passed" in page_text(browser), 60, what="a passed check: " + page_text(browser))
        text = page_text(browser)
        for check in ("unique_keys", "no_toast_placeholders", "fresh"):
            assert check in text, text

        assert run_status(ui, run_id) == "SUCCESS"  # no blocking check failed
        for table in ("members", "lending__loans"):  # an integer key walked in ranges; a composite key whole
            assert latest_check(ui, table, "content_parity") == "SUCCEEDED"

        browser.get(f"{ui}/assets/reports/loans_per_member?view=lineage&lineageScope=upstream&lineageDepth=4")
        skip_welcome(browser)
        wait_until(lambda: "lending__loans" in page_text(browser), 120, what="the report's lineage")
        skip_welcome(browser)
        shots = Path(os.environ.get("CDC_SCREENSHOT_DIR") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shots / "dagster-lineage.png"))

        # drift behind the bridge's back: content parity names the range, and the report waits
        ch.command(
            "INSERT INTO library._state_lending__loans SELECT * REPLACE (toUInt64(2e18) AS _version, 99 AS member_id)"
            " FROM (SELECT * FROM library._state_lending__loans FINAL WHERE member_id = 3 LIMIT 1)"
        )
        run_id = launch(ui, "checks")
        wait_until(lambda: run_status(ui, run_id) in ("SUCCESS", "FAILURE"), 300, what="the checks run to end")
        assert run_status(ui, run_id) == "FAILURE"  # a blocking check failed
        assert latest_check(ui, "lending__loans", "content_parity") == "FAILED"
        assert latest_check(ui, "members", "content_parity") == "SUCCEEDED"
        sql(dsn, "INSERT INTO lending.loans (member_id, isbn, lent_on) VALUES (1, '978-0-14-044913-6', '2026-06-01')")
        wait_until(lambda: run_failure(ui, "projections") is not None, 300, what="a gated build")
        message = str(run_failure(ui, "projections"))
        assert "reports/loans_per_member is not built" in message and "content_parity" in message, message
        assert report() == (7, 40)  # not rebuilt over the drifted mirror

        browser.get(f"{ui}/assets/clickhouse/library/lending__loans?view=checks")
        skip_welcome(browser)
        wait_until(lambda: "Failed" in page_text(browser), 120, what="the failed check in the UI")
        skip_welcome(browser)
        assert "Join the Dagster community" not in page_text(browser)
        assert browser.save_screenshot(str(shots / "dagster-failed-check.png"))
    finally:
        assert bridge.stop() == 0, bridge.output()


def test_cdc_ui_serves_a_running_bridge_until_ctrl_c(
    pg: EmbeddedPostgres, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    refused = BridgeProcess(state_dir, ["ui"])
    assert refused.proc.wait(60) == 2 and "no bridge runs on state dir" in refused.output(), refused.output()
    dsn = fresh_database(pg, "archive")
    sql(dsn, "CREATE TABLE boxes (shelf text, slot int, label text, PRIMARY KEY (shelf, slot))")
    sql(dsn, "INSERT INTO boxes VALUES ('A', 1, 'letters'), ('A', 2, 'maps')")
    bridge = start_bridge(bridges, state_dir, "--source", dsn, "--source-name", "archive", "--no-events")
    bridge.wait_for_line(r"ClickHouse endpoint", timeout=300)
    ui = BridgeProcess(state_dir, ["ui"])
    try:
        url = ui.wait_for_line(r"Dagster UI: (http://\S+)", timeout=300).group(1)
        nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"postgres/archive/boxes", "kafka/archive.public.boxes", "clickhouse/archive/boxes"} <= keys, keys
        assert not [k for k in keys if k.startswith("reports/")]  # no projection module named: no report
        again = BridgeProcess(state_dir, ["ui"])  # a second one finds the first
        assert again.proc.wait(60) == 0 and f"Dagster UI: {url} (already running" in again.output(), again.output()
        ui.proc.send_signal(signal.SIGINT)
        assert ui.proc.wait(60) == 0, ui.output()
        wait_until(lambda: not dagster_answers(url), 30, what="the Dagster UI to stop")
    finally:
        ui.kill()
    assert bridge.proc.poll() is None  # the bridge went on
    assert bridge.stop() == 0


def dagster_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2):
            return True
    except OSError:
        return False
