"""``SopKeys``: which SOP hashes the index may hold, answered exactly as a set would."""

from __future__ import annotations

import duckdb
import numpy as np

from pixels.web.sopkeys import SopKeys, _Sorted


def _hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)


def test_the_directory_answers_as_a_set_at_every_size_and_edge() -> None:
    """The sorted array's bucket directory finds each held hash and no other: sizes from
    empty to beyond one bucket per 8 hashes, the extreme values, repeated hashes, and
    hashes next to held ones (one above, one below: the same bucket or the next)."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 7, 8, 9, 100, 4_096, 100_003):
        held = _hashes(rng, n)
        if n > 4:
            held[:4] = [0, 1, 2**64 - 1, 2**64 - 2]
            held[4:8] = held[8:12] if n > 12 else held[4:8]  # repeats
        arr = _Sorted.of(np.sort(held))
        near = np.concatenate(
            [held[: min(n, 500)] + np.uint64(1), held[: min(n, 500)] - np.uint64(1)]
        )
        asked = np.concatenate(
            [held, _hashes(rng, 2_000), near, np.array([0, 2**64 - 1], np.uint64)]
        )
        assert np.array_equal(arr.holds(asked), np.isin(asked, held)), n
        assert arr.starts[-1] == n and np.all(np.diff(arr.starts) >= 0)


def test_keys_read_from_the_index_and_added_after() -> None:
    """Loaded from an index's ``inst_all`` and then added to, past the size where the
    additions are merged into the base array (its directory made again)."""
    rng = np.random.default_rng(11)
    loaded = _hashes(rng, 50_000)
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS ix")
    con.execute("CREATE TABLE ix.inst_all (sh UBIGINT)")
    con.execute("INSERT INTO ix.inst_all SELECT unnest(?::UBIGINT[])", [loaded.tolist()])
    keys = SopKeys()
    keys.load(con, background=False)
    assert keys.ready() and len(keys) == len(loaded)
    added = [_hashes(rng, 30_000) for _ in range(4)]  # the third passes _DELTA_MIN
    for part in added:
        keys.add(part)
    every = np.concatenate([loaded, *added])
    asked = np.concatenate([every, _hashes(rng, 20_000)])
    assert np.array_equal(keys.maybe_held(asked), np.isin(asked, every))
    assert len(keys._delta) < 30_000 * 4  # (merged into the base once)
