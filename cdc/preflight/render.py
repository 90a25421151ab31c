"""A preflight report for people (text) and for programs (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from cdc.preflight.report import Report, Severity
from cdc.preflight.rules import size

_LABEL = {Severity.BLOCKING: "BLOCKING", Severity.WARNING: "warning", Severity.INFO: "ok"}
_VERDICT = {0: "ready", 1: "not ready: fix the blocking findings", 2: "ready, with warnings"}


def text(report: Report) -> str:
    r = report
    lines = [
        f"preflight {r.dsn}",
        f"  database {r.database}, role {r.role}, source {r.source} (slot and publication {r.slot})",
        "",
    ]
    for f in r.ordered():
        label = "info" if f.severity is Severity.INFO and f.fix else _LABEL[f.severity]  # a note, not a pass
        lines.append(f"{label:<9} {f.check:<17} {f.message}")
        if f.fix and f.severity is not Severity.INFO:
            lines.append(f"{'':<27} fix: {f.fix}")
        elif f.fix:
            lines.append(f"{'':<27} ({f.fix})")
    if r.slots:
        lines += ["", "replication slots:"]
        for s in r.slots:
            kind = f"{s.plugin} in {s.database}" if s.slot_type == "logical" else s.slot_type
            state = "active" if s.active else "inactive"
            lines.append(f"  {s.slot_name:<24} {kind:<28} {state:<8} retains {size(s.retained_wal_bytes)}")
    lines += ["", f"{_summary(r)}: {_VERDICT[r.exit_code]} (exit {r.exit_code})"]
    return "\n".join(lines) + "\n"


def _summary(r: Report) -> str:
    counts = _counts(r)
    return f"{counts['blocking']} blocking, {counts['warning']} warning(s), {counts['info']} ok"


def _counts(r: Report) -> dict[str, int]:
    return {s.value: sum(1 for f in r.findings if f.severity is s) for s in Severity}


def as_dict(report: Report) -> dict[str, Any]:
    """Findings (blocking first) and a summary; ``summary.exit_code`` is the command's exit code."""
    r = report
    return {
        "dsn": r.dsn,
        "database": r.database,
        "role": r.role,
        "source": r.source,
        "slot": r.slot,
        "publication": r.publication,
        "tables": list(r.tables),
        "findings": [{**asdict(f), "severity": f.severity.value} for f in r.ordered()],
        "slots": [asdict(s) for s in r.slots],
        "summary": {**_counts(r), "ready": r.ready, "exit_code": r.exit_code},
    }


def json_text(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2) + "\n"
