"""Calling the running bridge's control routes (``/resync``, ``/tables``, ``/parity``) over its status
server: what `cdc resync`, `cdc add-table`, `cdc verify` and Dagster's content-parity check share."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cdc.errors import StackError
from cdc.status.server import find_status_url

TIMEOUT_S = 330.0


def bridge_url(state_dir: Path) -> str:
    """The status URL of the bridge running on ``state_dir``; StackError saying what to do when none runs."""
    url = find_status_url(state_dir)
    if url is None:
        raise StackError(
            f"no bridge is running on state dir {state_dir}: this command runs inside the bridge, so that "
            "streaming goes on meanwhile; start `cdc run`, or pass the --state-dir of the running bridge"
        )
    return url


def call(url: str, path: str, method: str, body: dict[str, Any] | None = None) -> Any:
    """The route's JSON answer; StackError carrying the bridge's message when it refuses."""
    code, answer = call_code(url, path, method, body)
    if code >= 400:
        raise StackError(f"the bridge refused: {answer.get('error', answer)}")
    return answer


def call_code(url: str, path: str, method: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(HTTP status, JSON answer) of one route; StackError when the bridge does not answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": f"HTTP {e.code}"}
    except (urllib.error.URLError, OSError) as e:
        raise StackError(f"the bridge at {url} did not answer: {getattr(e, 'reason', e)}") from None
