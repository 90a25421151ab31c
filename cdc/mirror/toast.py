"""Unchanged TOAST values: Debezium's placeholder must never replace a stored value in the mirror.

Under REPLICA IDENTITY DEFAULT an UPDATE that leaves a large (TOASTed) value alone does not log
it, and Debezium sends ``__debezium_unavailable_value`` instead (base64 of those bytes for a
bytea, an element for an array). The change log keeps what Debezium said; the state view
(``cdc.mirror.table``) skips such changes and the sink writes their state rows with
:func:`repair_sql`, which takes each placeholder column's value from the newest change that
carried a real value (in the change log since the batch began, else the stored state row).

Pure: builds SQL only. Detection per message is a bytes search (:func:`has_placeholder`).
"""

from __future__ import annotations

import json

from cdc.domain.values import INT_ARRAY_PLACEHOLDER, PLACEHOLDER, PLACEHOLDER_B64, UUID_ARRAY_PLACEHOLDER
from cdc.mirror.table import MirrorTable, quote

_MARKERS = (
    PLACEHOLDER.encode(),
    PLACEHOLDER_B64.rstrip("=").encode(),
    ("[" + ",".join(map(str, INT_ARRAY_PLACEHOLDER[:8]))).encode(),
    UUID_ARRAY_PLACEHOLDER.encode(),
)


def has_placeholder(value: bytes | None) -> bool:
    return value is not None and any(m in value for m in _MARKERS)


def any_placeholder(values: list[bytes]) -> bool:
    """One search over the whole batch: the usual answer (no) costs a copy and a few scans, no per-message call."""
    joined = b"\n".join(values)
    return any(m in joined for m in _MARKERS)


def message_lsn(value: bytes) -> int | None:
    """``source.lsn`` of a change message (only called for the few that carry a placeholder)."""
    try:
        lsn = json.loads(value)["source"]["lsn"]
    except (ValueError, KeyError, TypeError):
        return None
    return lsn if isinstance(lsn, int) else None


def repair_sql(table: MirrorTable, min_lsn: int) -> str:
    """Write the state row of every key whose newest change (at or after ``min_lsn``) holds a
    placeholder, with the placeholder replaced by the value it stands for; same ``_version`` as
    the change, so a later change still wins and running this twice changes nothing."""
    key = [quote(k) for k in table.known.key]
    keys = ", ".join(key)
    log, state = table.qualified("_log_"), table.qualified("_state_")
    inner, outer, toasted = [], [], []
    for i, plan in enumerate(table.log_plans):
        name = quote(plan.name)
        test = table.placeholder_test(plan, name)
        if plan.name in table.known.key:
            continue
        if test is None:
            inner.append(f"argMax(tuple({name}), _lsn).1 AS _v{i}")
            outer.append(f"l._v{i} AS {name}")
            continue
        toasted.append(name)
        inner += [
            f"argMax(tuple({name}), _lsn).1 AS _v{i}",
            f"argMaxIf(tuple({name}), _lsn, NOT ({test})).1 AS _r{i}",
            f"countIf(NOT ({test})) AS _n{i}",
        ]
        outer.append(
            f"if({table.placeholder_test(plan, f'l._v{i}')}, if(l._n{i} > 0, l._r{i}, s.{name}), l._v{i}) AS {name}"
        )
    cols = ", ".join(quote(p.name) for p in table.state_plans)
    since = f"_lsn >= {int(min_lsn)}"
    return (
        f"INSERT INTO {state} ({cols}, _version, _is_deleted, _lsn, _txid, _commit_ts, _op) "
        f"SELECT {', '.join(table.state_values())}, _lsn AS _version, 0 AS _is_deleted, _lsn, _txid, _commit_ts, _op "
        f"FROM (SELECT {', '.join('l.' + k + ' AS ' + k for k in key)}, {', '.join(outer)},"
        " l._m_lsn AS _lsn, l._m_txid AS _txid, l._m_ts AS _commit_ts, l._m_op AS _op FROM ("
        f"SELECT {keys}, {', '.join(inner)}, max(_lsn) AS _m_lsn, argMax(tuple(_txid), _lsn).1 AS _m_txid,"
        " argMax(_commit_ts, _lsn) AS _m_ts, argMax(_op, _lsn) AS _m_op,"
        f" argMax(toUInt8({table.placeholder_sql()}), _lsn) AS _m_ph"
        f" FROM {log} WHERE {since} GROUP BY {keys} HAVING _m_op != 'd' AND _m_ph = 1) AS l"
        f" LEFT JOIN (SELECT {', '.join(key + toasted + ['_version'])} FROM {state} FINAL"
        f" WHERE ({keys}) IN (SELECT {keys} FROM {log} WHERE {since})) AS s USING ({keys})"
        " WHERE l._m_lsn > s._version)"
    )


__all__ = ["any_placeholder", "has_placeholder", "message_lsn", "repair_sql"]
