"""The match benchmark's measurement order (bench/match_bench.py): balanced, so no measure pays for what ran before
it more often than another. A plain rotation made the match follow the scan in 4 fences of 5."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from match_bench import MEASURES, ORDERS, williams_orders  # noqa: E402


@pytest.mark.parametrize("n", range(2, 9))
def test_every_measure_follows_every_other_equally_often(n: int) -> None:
    orders = williams_orders(n)
    assert all(sorted(order) == list(range(n)) for order in orders)
    pairs = Counter((order[i - 1], order[i]) for order in orders for i in range(1, n))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(pairs.values())) == 1
    for position in range(n):
        assert Counter(order[position] for order in orders) == Counter({m: len(orders) // n for m in range(n)})


def test_the_benchmark_uses_a_balanced_order_for_its_own_measures() -> None:
    scan = MEASURES.index("scan")
    after_scan = Counter(order[i] for order in ORDERS for i in range(1, len(order)) if order[i - 1] == scan)
    assert set(after_scan.values()) == {len(ORDERS) // len(MEASURES)}
