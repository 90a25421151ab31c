"""`cdc status`: fetch the running bridge's snapshot from its status server and print it.

Exit codes: 0 healthy, 1 the snapshot carries warnings, 2 no bridge answers on the state dir
(raised as `StackError`, which the CLI prints as one `error:` line).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cdc.errors import StackError
from cdc.status import StatusSnapshot, render_text
from cdc.status.server import find_status_url

EXIT_HEALTHY, EXIT_WARNINGS = 0, 1


def fetch_snapshot(url: str, timeout: float = 30.0) -> StatusSnapshot:
    """GET `<url>/status`; a refusal, a 500 or a malformed answer becomes a `StackError` saying so."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/status", timeout=timeout) as response:  # noqa: S310
            data = json.loads(response.read())
    except urllib.error.HTTPError as e:
        detail = e.read(2000).decode("utf-8", "replace").strip().removeprefix("error: ")
        raise StackError(f"the bridge at {url} could not report its status ({e.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StackError(f"the bridge's status server at {url} did not answer: {reason}") from None
    except ValueError as e:
        raise StackError(f"the bridge at {url} answered with something that is not JSON: {e}") from None
    try:
        return StatusSnapshot.from_dict(data)
    except ValueError as e:
        raise StackError(f"the bridge at {url} sent a status this `cdc` cannot read: {e}") from None


def status(state_dir: Path, as_json: bool) -> int:
    """Print the running bridge's status (text, or the JSON snapshot with --json)."""
    url = find_status_url(state_dir)
    if url is None:
        raise StackError(
            f"no bridge is running on state dir {state_dir}: start `cdc run` or `cdc demo`, "
            "or pass the --state-dir of the running bridge"
        )
    snapshot = fetch_snapshot(url)
    if as_json:
        sys.stdout.write(json.dumps(snapshot.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render_text(snapshot))
    sys.stdout.flush()
    return EXIT_WARNINGS if snapshot.warnings else EXIT_HEALTHY
