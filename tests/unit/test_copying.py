"""The copy path's scratch files (cdc.mirror.copying): a killed process's are removed, a live one's kept."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cdc.mirror.copying import remove_stale_scratch, scratch_dir


def test_scratch_of_a_dead_process_is_removed_and_a_live_ones_kept() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Path(tempfile.mkdtemp(prefix=f"cdc-copy-{gone.stdout.strip()}-"))
    (dead / "0.tsv").write_bytes(b"1\t2\n")
    mine = scratch_dir()
    other = Path(tempfile.mkdtemp(prefix="cdc-copyish-"))  # not one of ours
    try:
        assert mine.name.startswith(f"cdc-copy-{os.getpid()}-")
        remove_stale_scratch()
        assert not dead.exists() and mine.exists() and other.exists()
    finally:
        for path in (dead, mine, other):
            if path.exists():
                path.rmdir()
