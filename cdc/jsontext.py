"""JSON in and out on the domain-event lane's hot path: orjson where it gives what the standard
library gives, the standard library for everything else.

orjson parses and writes several times faster than :mod:`json`, which matters at one change
message and one or more events per row. Where the two differ, the standard library decides:

* ``loads``: what orjson refuses (``NaN``/``Infinity`` literals, a number beyond a double, invalid
  UTF-8, a lone surrogate escape) is parsed again by :mod:`json`, so such a message gets exactly
  the value or the error it got before. One difference is left: an integer beyond 64 bits comes
  back as a float from orjson; PostgreSQL has no such integer column and Debezium writes
  ``numeric`` as text (``decimal.handling.mode = string``), so no change message carries one.
* ``dumps_clean``: only for values made by :func:`cdc.domain.ids.to_json_value`, which has already
  turned NaN and the infinities into strings (orjson would write ``null`` for them). Keys are
  sorted, as the standard encoder here sorts them; text is written as UTF-8, not ``\\u`` escapes
  (the same JSON value). An integer beyond 64 bits or a lone surrogate falls back to :mod:`json`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_SORTED = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
_PLAIN = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def loads(data: bytes | str) -> Any:
    """``json.loads``, faster (see the module's note on what differs)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # the standard library's own value, or its own error


def dumps_clean(value: Any, sort_keys: bool = True) -> bytes:
    """Compact JSON of a value made by ``to_json_value`` (no NaN, no infinities), as UTF-8."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate
        return (_SORTED if sort_keys else _PLAIN).encode(value).encode()
