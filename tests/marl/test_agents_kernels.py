"""The learned agents' numba layers against plain loops."""

from __future__ import annotations

import numpy as np

from strategies.marl.agents import _dense_nb


def _dense_reference(h, w, b, relu):
    out = []
    for j in range(w.shape[1]):
        total = float(b[j])
        for i in range(w.shape[0]):
            total += float(h[i]) * float(w[i, j])
        out.append(max(total, 0.0) if relu else total)
    return np.array(out)


def test_dense_layer_skipping_zero_inputs_equals_full_sum_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for relu in (True, False):
        for _ in range(50):
            h = np.maximum(rng.normal(size=64), 0.0)  # about half exact zeros, as after a ReLU
            w = rng.normal(size=(64, 32))
            b = rng.normal(size=32)
            out = np.empty(32)
            _dense_nb(h, w, b, out, relu)
            assert out.tobytes() == _dense_reference(h, w, b, relu).tobytes()


def test_dense_layer_any_count_of_nonzero_inputs_equals_full_sum_bit_for_bit() -> None:
    # none, one, an odd and an even number of nonzero inputs, at the ends and inside
    rng = np.random.default_rng(8)
    w = rng.normal(size=(9, 5))
    b = rng.normal(size=5)
    for nonzero in ([], [0], [8], [0, 8], [2, 3, 7], [1, 2, 4, 6], list(range(9))):
        h = np.zeros(9)
        h[nonzero] = rng.uniform(0.1, 2.0, len(nonzero))
        out = np.empty(5)
        _dense_nb(h, w, b, out, False)
        assert out.tobytes() == _dense_reference(h, w, b, False).tobytes(), nonzero


def test_dense_layer_float32_weights_sum_in_float64_like_float64_weights() -> None:
    rng = np.random.default_rng(6)
    for _ in range(50):
        h = np.maximum(rng.normal(size=64), 0.0)
        w32 = rng.normal(size=(64, 32)).astype(np.float32)
        b = rng.normal(size=32)
        out32 = np.empty(32)
        out64 = np.empty(32)
        _dense_nb(h, w32, b, out32, True)
        _dense_nb(h, w32.astype(np.float64), b, out64, True)
        assert out32.tobytes() == out64.tobytes()
        assert out32.tobytes() == _dense_reference(h, w32.astype(np.float64), b, True).tobytes()
