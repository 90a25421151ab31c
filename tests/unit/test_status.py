"""The status snapshot: rate window, warnings, text report and Prometheus exposition."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import pytest

from cdc.status import (
    GIB,
    RateWindow,
    ReportStatus,
    SchemaNotice,
    SourceStatus,
    StatusSnapshot,
    Thresholds,
    TopicLag,
    prometheus_text,
    render_text,
    warnings_for,
)


def _source(**overrides: object) -> SourceStatus:
    base: dict[str, object] = dict(
        name="shop",
        dsn="postgresql://cdc:***@127.0.0.1:55432/shop",
        slot="cdc_shop",
        slot_active=True,
        retained_wal_bytes=12 * 1024**2,
        captured=1500,
        applied=1490,
        rows_per_s_1m=25.0,
        freshness_s=0.8,
        events_stored=300,
        dead_letters=0,
        topics=(TopicLag("shop.public.orders", 10, 990, 1000), TopicLag("shop.public.customers", 0, 500, 500)),
    )
    base.update(overrides)
    return SourceStatus(**base)  # type: ignore[arg-type]


def _snapshot(*sources: SourceStatus, dead_letters: int | None = 0, warnings: tuple[str, ...] = ()) -> StatusSnapshot:
    return StatusSnapshot(
        generated_at="2025-01-02T03:04:05.000Z",
        state_dir="/var/lib/cdc",
        uptime_s=3723.0,
        clickhouse_url="http://127.0.0.1:18123",
        kafka_bootstrap="127.0.0.1:19092",
        sources=sources or (_source(),),
        dead_letters=dead_letters,
        warnings=warnings,
    )


# --- RateWindow ------------------------------------------------------------------------------


def test_rate_with_less_than_a_minute_of_history_uses_what_there_is() -> None:
    window = RateWindow(60.0)
    assert window.rate(0.0) == 0.0
    window.add(0.0, 0)
    assert window.rate(0.0) == 0.0
    window.add(10.0, 500)
    assert window.rate(10.0) == pytest.approx(50.0)


def test_rate_covers_only_the_last_minute() -> None:
    window = RateWindow(60.0)
    for t in range(0, 121):  # 100/s for two minutes, then 10/s
        window.add(float(t), t * 100 if t <= 100 else 10_000 + (t - 100) * 10)
    # the window 60..120 holds 40 s at 100/s and 20 s at 10/s
    assert window.rate(120.0) == pytest.approx((40 * 100 + 20 * 10) / 60)


def test_rate_decays_when_the_counter_stops() -> None:
    window = RateWindow(60.0)
    window.add(0.0, 0)
    window.add(30.0, 3000)
    assert window.rate(60.0) == pytest.approx(50.0)
    assert window.rate(200.0) == 0.0  # nothing moved within the last minute


def test_a_counter_reset_starts_the_history_afresh() -> None:
    window = RateWindow(60.0)
    window.add(0.0, 0)
    window.add(10.0, 10_000)
    window.add(11.0, 5)  # the counter's owner restarted
    assert window.rate(11.0) == 0.0
    window.add(21.0, 105)
    assert window.rate(21.0) == pytest.approx(10.0)


def test_frequent_samples_do_not_pile_up() -> None:
    window = RateWindow(60.0)
    for i in range(100_000):
        window.add(i * 0.001, i)
    assert len(window._samples) < 300
    assert window.rate(99.999) == pytest.approx(1000.0, rel=0.01)


# --- warnings --------------------------------------------------------------------------------


def test_a_healthy_bridge_has_no_warnings() -> None:
    assert warnings_for(_snapshot()) == []


def test_inactive_slot_is_a_warning_that_says_what_to_do() -> None:
    [warning] = warnings_for(_snapshot(_source(slot_active=False)))
    assert "cdc_shop" in warning and "inactive" in warning and "restart the bridge" in warning


def test_retained_wal_over_the_threshold_names_the_size_and_the_fixes() -> None:
    snap = _snapshot(_source(retained_wal_bytes=3 * GIB))
    [warning] = warnings_for(snap)
    assert "3.0 GiB" in warning and "1.0 GiB" in warning
    assert "pg_drop_replication_slot('cdc_shop')" in warning and "restart the bridge" in warning
    assert warnings_for(snap, Thresholds(max_retained_wal_bytes=4 * GIB)) == []
    assert warnings_for(snap, Thresholds(max_retained_wal_bytes=None)) == []


def test_old_freshness_warns_only_while_messages_wait() -> None:
    stale = _source(freshness_s=900.0)
    [warning] = warnings_for(_snapshot(stale))
    assert "15m00s" in warning and "10 message(s) waiting" in warning
    idle = _source(freshness_s=900.0, topics=(TopicLag("shop.public.orders", 0, 1000, 1000),))
    assert warnings_for(_snapshot(idle)) == []  # nothing changed in PostgreSQL: old is fine
    assert warnings_for(_snapshot(stale), Thresholds(max_freshness_s=1000.0)) == []


def test_lag_threshold_is_off_by_default() -> None:
    lagging = _source(topics=(TopicLag("shop.public.orders", 50_000, 0, 50_000),))
    assert warnings_for(_snapshot(lagging)) == []
    [warning] = warnings_for(_snapshot(lagging), Thresholds(max_lag_messages=1000))
    assert "50,000" in warning


def test_dead_letters_schema_notices_and_errors_each_point_somewhere() -> None:
    notice = SchemaNotice("public.orders", "column_added", "discount", "new column is not mirrored")
    snap = _snapshot(
        _source(dead_letters=3, schema_notices=(notice,), errors=("cannot read the slot",)), dead_letters=3
    )
    dead, schema, error = warnings_for(snap)
    assert "3 dead letter(s)" in dead and "cdc dlq list" in dead
    assert "public.orders" in schema
    assert "cannot read the slot" in error and "/var/lib/cdc/logs/cdc.log" in error


def test_schema_changes_the_mirror_follows_by_itself_are_listed_without_a_warning() -> None:
    added = SchemaNotice("shop.public.orders", "added", "discount", "new Nullable column")
    dropped = SchemaNotice("shop.public.orders", "dropped", "note", "kept, NULL from now on")
    assert warnings_for(_snapshot(_source(schema_notices=(added,)))) == []
    (warning,) = warnings_for(_snapshot(_source(schema_notices=(added, dropped))))
    assert "1 schema change(s)" in warning and "shop.public.orders" in warning


def test_bridge_wide_dead_letters_not_attributed_to_a_source_warn_once() -> None:
    [warning] = warnings_for(_snapshot(_source(dead_letters=None), dead_letters=7))
    assert "7 dead letter(s)" in warning and "cdc dlq list" in warning


def test_with_warnings_keeps_given_ones_first_without_repeats() -> None:
    snap = _snapshot(warnings=("events worker stopped",))
    assert snap.with_warnings(["a", "events worker stopped", "a"]).warnings == ("events worker stopped", "a")


# --- schema ----------------------------------------------------------------------------------


def test_snapshot_round_trips_through_json() -> None:
    notice = SchemaNotice("public.orders", "column_dropped", "note", "kept in ClickHouse as NULL")
    snap = _snapshot(_source(schema_notices=(notice,), freshness_s=None, slot_active=None), dead_letters=None)
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["version"] == 1 and data["sources"][0]["lag_messages"] == 10
    assert StatusSnapshot.from_dict(data) == snap


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("version",), 2, "version"),
        (("sources", 0, "captured"), "many", "'captured'"),
        (("sources", 0, "slot_active"), "yes", "slot_active"),
    ],
)
def test_a_malformed_snapshot_is_rejected_naming_the_field(
    path: tuple[object, ...], value: object, message: str
) -> None:
    data = _snapshot().to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    with pytest.raises(ValueError, match=message):
        StatusSnapshot.from_dict(data)


# --- text ------------------------------------------------------------------------------------


def test_text_report_shows_each_source_its_topics_and_the_warnings_last() -> None:
    snap = _snapshot(_source(slot_active=False, freshness_s=None))
    text = render_text(snap.with_warnings(warnings_for(snap)))
    lines = text.splitlines()
    assert lines[0].startswith("cdc bridge on /var/lib/cdc: up 1h02m")
    assert "source shop  postgresql://cdc:***@127.0.0.1:55432/shop" in lines
    assert any("cdc_shop: INACTIVE, retains 12.0 MiB of WAL" in line for line in lines)
    assert any("nothing applied yet" in line and "lag 10 message(s)" in line for line in lines)
    header = next(line for line in lines if line.strip().startswith("topic"))
    assert header.split() == ["topic", "committed", "end", "lag"]
    assert any(line.split() == ["shop.public.orders", "990", "1,000", "10"] for line in lines)
    assert lines[-2] == "warnings (1):" and lines[-1].startswith("  ! source shop: replication slot cdc_shop")


def test_text_report_shows_unknowns_and_no_warnings() -> None:
    text = render_text(_snapshot(_source(retained_wal_bytes=None, events_stored=None), dead_letters=None))
    assert "retains ? of WAL" in text and "events stored  ?" in text and "dead letters waiting: ?" in text
    assert text.endswith("no warnings\n")


# --- Prometheus ------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_UNESCAPE = re.compile(r"\\(.)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def _parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """A tiny 0.0.4 parser: TYPE per family, and every sample with its unescaped labels."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"TYPE given twice for {name}"
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            raw = match["labels"] or ""
            pairs = _LABEL.findall(raw)
            assert "".join(f'{k}="{v}",' for k, v in pairs).rstrip(",") == raw, f"bad labels: {raw!r}"
            labels = {k: _UNESCAPE.sub(lambda m: {"n": "\n"}.get(m[1], m[1]), v) for k, v in pairs}
            assert match["name"] in types, f"sample {match['name']} before its TYPE"
            samples.append((match["name"], labels, float(match["value"])))
    assert helps == set(types)
    return types, samples


def test_prometheus_text_is_valid_and_typed() -> None:
    types, samples = _parse(prometheus_text(_snapshot(dead_letters=2)))
    for name, kind in types.items():
        assert name.startswith("cdc_")
        assert kind in ("gauge", "counter")
        assert (kind == "counter") == name.endswith("_total"), name
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    assert values[("cdc_up", ())] == 1
    assert values[("cdc_slot_retained_wal_bytes", (("slot", "cdc_shop"), ("source", "shop")))] == 12 * 1024**2
    assert values[("cdc_slot_active", (("slot", "cdc_shop"), ("source", "shop")))] == 1
    assert values[("cdc_consumer_lag_messages", (("source", "shop"), ("topic", "shop.public.orders")))] == 10
    assert values[("cdc_committed_offset", (("source", "shop"), ("topic", "shop.public.orders")))] == 990
    assert values[("cdc_captured_total", (("source", "shop"),))] == 1500
    assert values[("cdc_applied_total", (("source", "shop"),))] == 1490
    assert values[("cdc_rows_per_second", (("source", "shop"),))] == 25.0
    assert values[("cdc_freshness_seconds", (("source", "shop"),))] == 0.8
    assert values[("cdc_events_stored_total", (("source", "shop"),))] == 300
    assert values[("cdc_dead_letters", (("source", "shop"),))] == 0
    assert values[("cdc_dead_letters", (("source", ""),))] == 2  # not attributed to a source
    assert values[("cdc_warnings", ())] == 0


def test_prometheus_label_values_are_escaped() -> None:
    odd = 'we"ird\\name\nx'
    _, samples = _parse(prometheus_text(_snapshot(_source(name=odd, topics=(TopicLag('t"1', 1, 1, 2),)))))
    assert {labels.get("source") for _, labels, _ in samples if "source" in labels} == {odd}
    assert any(labels.get("topic") == 't"1' for _, labels, _ in samples)


def test_prometheus_leaves_unknowns_out() -> None:
    snap = _snapshot(
        _source(slot_active=None, retained_wal_bytes=None, freshness_s=None, dead_letters=None), dead_letters=None
    )
    types, samples = _parse(prometheus_text(snap))
    names = {name for name, _, _ in samples}
    assert not {"cdc_slot_active", "cdc_slot_retained_wal_bytes", "cdc_freshness_seconds"} & names
    assert "cdc_dead_letters" not in types


REPORTS = (
    ReportStatus("order_funnel", "2025-01-02T03:00:00Z", 0, 0.0),
    ReportStatus("revenue_daily_product", "2025-01-02T02:00:00Z", 1200, 900.5),
)


def test_reports_trailing_the_event_store_show_in_status_metrics_and_warnings() -> None:
    snap = dataclasses.replace(_snapshot(), reports=REPORTS)
    assert StatusSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    text = render_text(snap)
    assert "order_funnel" in text and "current" in text
    assert "revenue_daily_product" in text and "1,200" in text and "15m00s" in text
    (warning,) = warnings_for(snap)
    assert (
        warning.startswith("report revenue_daily_product: 1,200 stored event(s) waited 15m00s") and "cdc ui" in warning
    )
    assert not warnings_for(snap, Thresholds(max_report_lag_s=None))
    _, samples = _parse(prometheus_text(snap))
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    assert values[("cdc_report_lag_seconds", (("report", "revenue_daily_product"),))] == 900.5
    assert values[("cdc_report_pending_events", (("report", "order_funnel"),))] == 0
    stamp = values[("cdc_report_watermark_timestamp_seconds", (("report", "order_funnel"),))]
    assert stamp == dt.datetime(2025, 1, 2, 3, tzinfo=dt.UTC).timestamp()


def test_unknown_reports_are_shown_as_unknown_not_as_none() -> None:
    snap = dataclasses.replace(_snapshot(), reports=None)
    assert StatusSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))).reports is None
    assert "reports: ?" in render_text(snap)
    assert "none built yet" in render_text(_snapshot())
    assert "cdc_report_lag_seconds" not in prometheus_text(snap)
