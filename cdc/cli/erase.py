"""`cdc erase AGGREGATE ID`: remove one aggregate's data (a person's, usually) from everything the bridge wrote.

With a bridge running on the state dir the bridge does it (``POST /erase``): it waits for the source's
latest changes, pauses Debezium, erases, empties the embedded broker's topics and rebuilds the reports.
With none, this process erases ClickHouse itself (an embedded broker's records went with its bridge).
"""

from __future__ import annotations

import sys
from typing import Any

from cdc import bootstrap, erasure
from cdc.erasures import EXTERNAL_TOPICS
from cdc.errors import ConfigError
from cdc.mirror import captured
from cdc.settings import Settings
from cdc.status.client import call_code
from cdc.status.server import find_status_url

EXIT_DONE, EXIT_REFUSED = 0, 2


def erase(
    settings: Settings, aggregate: str, aggregate_id: str, source: str | None, translators: tuple[str, ...]
) -> int:
    url = find_status_url(settings.state_dir)
    if url is not None:
        print(f"erasing {aggregate} {aggregate_id}: the running bridge waits for the source's latest changes,"
              " pauses capture, erases and empties the broker's topics ...", flush=True)  # fmt: skip
        code, answer = call_code(url, "/erase", "POST", {"aggregate": aggregate, "id": aggregate_id, "source": source})
        if code != 200:
            print(f"error: {answer.get('error', answer)}", file=sys.stderr)
            return EXIT_REFUSED
        _report(answer)
        return EXIT_DONE
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
        erasure.audit(warehouse, done)
    finally:
        warehouse.close()
    _report(done.to_dict())
    return EXIT_DONE


def _report(done: dict[str, Any]) -> None:
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(done["rows"].items())) or "none"
    print(f"erased {done['aggregate_type']} (sha256 {done['id_sha256'][:16]}…) of source {done['source']}")
    print(f"  mirror rows (state rows + change-log versions): {rows}")
    print(
        f"  events: {done['events']:,} of {done['aggregates']:,} aggregate(s); dead letters: {done['dead_letters']:,}"
    )
    print(f"  topics: {done['topics']}")
    print(f"  reports rebuilt: {', '.join(done['reports']) or 'none'}")
    print("  recorded in cdc.erasures (counts and a digest of the id, no values)")
