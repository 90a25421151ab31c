"""`cdc events check` as a user runs it: a translator module evolves, the catalog snapshot guards it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HEADER = """
from dataclasses import dataclass
from cdc.domain.events import event, upcaster
"""
V1 = """
@event("ParcelShipped", version=1, aggregate="parcel", key="parcel_id", tables=["public.parcels"])
@dataclass(frozen=True)
class ParcelShippedV1:
    parcel_id: int
    carrier: str
"""
V1_WITH_FIELD = V1 + "    tracking: str\n"
V2 = """
@event("ParcelShipped", version=2, aggregate="parcel", key="parcel_id", tables=["public.parcels"])
@dataclass(frozen=True)
class ParcelShipped:
    parcel_id: int
    carrier: str
    tracking: str | None
"""
UPCASTER = """
@upcaster("ParcelShipped", from_version=1)
def v1_to_v2(payload):
    return {**payload, "tracking": None}
"""


def _check(tmp_path: Path, body: str, *extra: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "parcels_events.py"
    module.write_text(textwrap.dedent(HEADER + body))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cdc.cli",
            "events",
            "check",
            "--translators",
            "parcels_events",
            "--snapshot",
            str(tmp_path / "catalog.json"),
            "--state-dir",
            str(tmp_path / "state"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_check_fails_on_an_unversioned_change_and_passes_after_a_bump_with_an_upcaster(tmp_path: Path) -> None:
    missing = _check(tmp_path, V1)
    assert missing.returncode == 1 and "--update" in missing.stdout

    recorded = _check(tmp_path, V1, "--update")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    snapshot = json.loads((tmp_path / "catalog.json").read_text())
    assert snapshot["events"]["ParcelShipped"]["versions"]["1"]["fields"] == {
        "carrier": "string",
        "parcel_id": "integer",
    }
    assert _check(tmp_path, V1).returncode == 0

    unversioned = _check(tmp_path, V1_WITH_FIELD)
    assert unversioned.returncode == 1
    assert "ParcelShipped v1" in unversioned.stdout and "tracking" in unversioned.stdout
    assert "without a version bump" in unversioned.stdout
    refused = _check(tmp_path, V1_WITH_FIELD, "--update")
    assert refused.returncode == 1 and json.loads((tmp_path / "catalog.json").read_text()) == snapshot

    no_upcaster = _check(tmp_path, V1 + V2)
    assert no_upcaster.returncode == 2 and "no upcaster from v1" in no_upcaster.stderr

    bumped = _check(tmp_path, V1 + V2 + UPCASTER)
    assert bumped.returncode == 0, bumped.stdout + bumped.stderr
    assert _check(tmp_path, V1 + V2 + UPCASTER, "--update").returncode == 0
    versions = json.loads((tmp_path / "catalog.json").read_text())["events"]["ParcelShipped"]["versions"]
    assert sorted(versions) == ["1", "2"] and "tracking" in versions["2"]["fields"]

    # the v1 class may go once an upcaster still lifts stored v1 payloads; dropping both may not
    assert _check(tmp_path, V2 + UPCASTER).returncode == 0
    dropped = _check(tmp_path, V2)
    assert dropped.returncode == 1 and "v1" in dropped.stdout
