"""`cdc erase AGGREGATE ID`: remove one aggregate's data (a person's, usually) from everything the bridge wrote.

With a bridge running on the state dir the bridge does it (``POST /erase``): it waits for the source's
latest changes, pauses Debezium, erases, empties the embedded broker's topics and rebuilds the reports.
With none, this process erases ClickHouse itself (an embedded broker's records went with its bridge).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cdc import bootstrap, erasure
from cdc.erasures import EXTERNAL_TOPICS
from cdc.errors import ConfigError, StackError
from cdc.mirror import captured
from cdc.settings import Settings
from cdc.status.client import call_code
from cdc.status.server import find_status_url

EXIT_DONE, EXIT_REPORTS_LEFT, EXIT_REFUSED = 0, 1, 2


def erase(
    settings: Settings, aggregate: str, aggregate_id: str, source: str | None, translators: tuple[str, ...]
) -> int:
    url = find_status_url(settings.state_dir)
    if url is not None:
        _same_bridge(url, settings)
        print(f"erasing {aggregate} {aggregate_id}: the running bridge waits for the source's latest changes,"
              " pauses capture, erases and empties the broker's topics ...", flush=True)  # fmt: skip
        code, answer = call_code(url, "/erase", "POST", {"aggregate": aggregate, "id": aggregate_id, "source": source})
        if code != 200:
            print(f"error: {answer.get('error', answer)}", file=sys.stderr)
            return EXIT_REFUSED
        return _report(answer)
    registry = bootstrap.registry(settings, translators)
    rule = registry.erasures.get(aggregate)
    if rule is None:
        declared = ", ".join(sorted(registry.erasures)) or "none"
        raise ConfigError(
            f"no erasure rule for {aggregate!r}; declared: {declared} (erasure(...) in the translators module)"
        )
    warehouse = bootstrap.warehouse(settings)
    try:
        names = sorted({t.source for t in captured.read(warehouse)})
        if source is None and len(names) != 1:
            raise ConfigError(f"name the source with --source (the store holds {', '.join(names) or 'none'})")
        done = erasure.erase(warehouse, source or names[0], rule, aggregate_id, "command")
        done.topics = (
            EXTERNAL_TOPICS
            if settings.kafka_bootstrap_servers
            else "none: no bridge runs, and the embedded broker keeps nothing once stopped"
        )
        done.reports = bootstrap.rebuild_reports(warehouse, done.source)
        done.reports_left = sorted(set(erasure.built_reports(warehouse)) - set(done.reports))
        erasure.audit(warehouse, done)
    finally:
        warehouse.close()
    return _report(done.to_dict())


def _same_bridge(url: str, settings: Settings) -> None:
    """Refuse when the state dir's status file points at another bridge (a stale file, its port reused):
    an erasure must run where it was asked for."""
    from cdc.cli.status import fetch_snapshot

    serving = Path(fetch_snapshot(url).state_dir).resolve()
    if serving != settings.state_dir.resolve():
        raise StackError(
            f"the status file of {settings.state_dir} points at {url}, which serves the bridge of {serving}:"
            " nothing was erased; check which bridge runs on this state dir"
        )


def _report(done: dict[str, Any]) -> int:
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(done["rows"].items())) or "none"
    print(f"erased {done['aggregate_type']} (sha256 {done['id_sha256'][:16]}…) of source {done['source']}")
    print(f"  mirror rows (state rows + change-log versions): {rows}")
    print(
        f"  events: {done['events']:,} of {done['aggregates']:,} aggregate(s); dead letters: {done['dead_letters']:,}"
    )
    print(f"  topics: {done['topics']}")
    print(f"  reports rebuilt: {', '.join(done['reports']) or 'none'}")
    print("  recorded in cdc.erasures (counts and a digest of the id, no values)")
    left = done.get("reports_left") or []
    if left:
        print(
            f"warning: reports {', '.join(left)} were built before but not rebuilt now, so they may still hold"
            " the erased data: set CDC_PROJECTIONS__MODULES (the modules Dagster builds) and run `cdc erase`"
            " again, or run Dagster's full_rebuild job",
            file=sys.stderr,
        )
        return EXIT_REPORTS_LEFT
    return EXIT_DONE
