"""The cost rule's three statements agree bit for bit: the scalar functions (the broker's),
their numba compilations (the meta-investor's kernels) and the vectorised form (the
training market), on random trades that include no trade, the minimum and both sides."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from brokers.costs import CostRates, commission, market_fill, step_pnl, trade_costs

_fill_nb = njit(market_fill)
_commission_nb = njit(commission)


def _same(a: object, b: object) -> bool:
    return np.asarray(a, dtype=float).tobytes() == np.asarray(b, dtype=float).tobytes()


@pytest.mark.parametrize("seed", range(5))
def test_scalar_compiled_and_vectorised_costs_agree_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    costs = CostRates(
        commission_bps=float(rng.choice([0.0, 2.5, 13.0])),
        commission_per_unit=float(rng.choice([0.0, 0.01])),
        commission_minimum=float(rng.choice([0.0, 5.0, 40.0])),
        slippage_bps=float(rng.choice([0.0, 1.5, 25.0])),
    )
    traded = np.round(rng.normal(0.0, 300.0, 500))
    traded[::7] = 0.0  # no trade: no cost, no slippage
    price = rng.uniform(0.5, 500.0, 500)
    fill, charged = trade_costs(traded, price, costs)
    for k in range(len(traded)):
        d, p = float(traded[k]), float(price[k])
        scalar_fill = market_fill(p, d, costs.slippage)
        assert _same(scalar_fill, fill[k]) and _same(_fill_nb(p, d, costs.slippage), fill[k])
        args = (
            abs(d),
            scalar_fill,
            costs.rate,
            costs.commission_per_unit,
            costs.commission_minimum,
        )
        assert _same(commission(*args), charged[k]) and _same(_commission_nb(*args), charged[k])


def test_the_rule_by_hand() -> None:
    costs = CostRates(commission_bps=10.0, commission_per_unit=0.01, commission_minimum=5.0,
                      slippage_bps=20.0)  # fmt: skip
    assert market_fill(100.0, 10.0, costs.slippage) == pytest.approx(100.2)
    assert market_fill(100.0, -10.0, costs.slippage) == pytest.approx(99.8)
    assert market_fill(100.0, 0.0, costs.slippage) == 100.0
    # 1,000 units at 100.2: 100,200 notional x 10 bps = 100.2, plus 10.0 per unit
    assert commission(1_000.0, 100.2, costs.rate, 0.01, 5.0) == pytest.approx(110.2)
    assert commission(1.0, 100.2, costs.rate, 0.01, 5.0) == 5.0  # the minimum
    assert commission(0.0, 100.2, costs.rate, 0.01, 5.0) == 0.0  # no fill, no minimum
    # held 10 from a close of 99 into an open of 100, bought 5 more at 100.2 for 5.0, closed
    # at 103: 10 x 1 + 5 x (100 - 100.2) + 15 x 3 - 5 = 49
    assert step_pnl(10.0, 15.0, 99.0, 100.0, 103.0, 100.2, 5.0) == pytest.approx(49.0)
    assert costs.scaled(2.0) == CostRates(20.0, 0.02, 10.0, 40.0)
