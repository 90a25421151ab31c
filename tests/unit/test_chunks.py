"""How the copy path splits a table (cdc.mirror.chunks.chunk_count): few large chunks, enough of them."""

from __future__ import annotations

import pytest

from cdc.mirror.chunks import CHUNK_ROWS, MIN_CHUNK_ROWS, MIN_CHUNKS, chunk_count


@pytest.mark.parametrize(
    ("estimate", "workers", "chunks"),
    [
        (0, 2, 1),
        (MIN_CHUNK_ROWS, 2, 1),  # small: one chunk, one insert
        (200_000, 2, 2),  # two of 100,000
        (300_000, 2, 4),  # 3 to keep both workers busy, rounded up to a multiple of the workers
        (600_000, 2, 4),
        (5_000_000, 2, 6),  # 5 of a million at most, then even
        (5_000_000, 3, 6),
        (10**12, 2, 10_000),  # capped
    ],
)
def test_chunk_count(estimate: int, workers: int, chunks: int) -> None:
    assert chunk_count(estimate, workers) == chunks


def test_chunks_stay_within_the_bounds() -> None:
    for estimate in range(MIN_CHUNK_ROWS + 1, 50 * CHUNK_ROWS, 777_777):
        n = chunk_count(estimate)
        assert estimate / n <= CHUNK_ROWS and n % 2 == 0
        assert n >= min(MIN_CHUNKS, estimate // MIN_CHUNK_ROWS)  # up to 4 of at least MIN_CHUNK_ROWS
