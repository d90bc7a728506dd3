"""The meta-investor's scalar kernels against the numpy statement of the same rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brokers.config import BrokerConfig
from strategies.meta.decision import (
    coalition_pnl,
    coalition_pnl_nb,
    decision_nb,
    ensemble_targets,
)
from strategies.meta.shapley import coalition_masks


def _same_floats(a, b) -> bool:
    """Equal bit for bit, the sign of zeros included."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.tobytes() == b.tobytes()


@pytest.mark.parametrize("votes_kind", ["one_hot", "probabilities"])
def test_investor_kernels_random_votes_equal_numpy_reference_bit_for_bit(votes_kind) -> None:
    rng = np.random.default_rng(11)
    masks = coalition_masks(3).astype(np.float64)
    for _ in range(2_000):
        if votes_kind == "one_hot":
            votes = np.eye(3)[rng.integers(0, 3, 3)]
        else:
            votes = rng.dirichlet([0.5, 0.5, 0.5], size=3)
        weights = rng.dirichlet([1.0, 1.0, 1.0])
        broker = BrokerConfig(
            initial_cash=1e6,
            commission_bps=float(rng.choice([0.0, 2.5])),
            commission_minimum=float(rng.choice([0.0, 5.0])),
            commission_per_unit=float(rng.choice([0.0, 0.01])),
            slippage_bps=float(rng.choice([0.0, 1.0])),
        )
        max_position = float(rng.choice([1_000.0, 100_000.0]))
        threshold = float(rng.choice([-0.5, 0.0, 0.3]))
        lot = float(rng.choice([1.0, 100.0]))
        previous = float(rng.choice([0.0, 500.0, -3_000.0]))
        band = float(rng.choice([0.0, 0.0, 0.05, 0.3])) * max_position
        previous_close, open_price, close_price = rng.uniform(5.0, 20.0, 3)

        _, expected = coalition_pnl(
            votes,
            weights,
            masks,
            max_position=max_position,
            threshold=threshold,
            lot_size=lot,
            previous=previous,
            previous_close=previous_close,
            open_price=open_price,
            close_price=close_price,
            broker=broker,
            band=band,
        )
        got = np.empty(len(masks))
        coalition_pnl_nb(
            votes,
            weights,
            masks,
            max_position,
            threshold,
            lot,
            band,
            previous,
            previous_close,
            open_price,
            close_price,
            broker.slippage_bps / 1e4,
            broker.commission_bps / 1e4,
            broker.commission_per_unit,
            broker.commission_minimum,
            got,
        )
        assert _same_floats(got, expected)

        ensemble = np.ones((1, 3)) @ (weights[:, None] * votes)
        p = ensemble[0]
        # the C library's log, which the kernels call: numpy's own vectorised log can
        # differ from it by one ulp (its AVX-512 version does, on 0.35% of inputs)
        t0, t1, t2 = (float(q) * math.log(q) if q > 0 else 0.0 for q in p)
        entropy = -((t0 + t1) + t2)
        target = ensemble_targets(ensemble, max_position, threshold, lot, previous, band)[0]
        decision = np.empty(5)
        decision_nb(votes, weights, max_position, threshold, lot, previous, band, decision)
        assert _same_floats(decision, [target, p.max() - entropy, p[0], p[1], p[2]])
