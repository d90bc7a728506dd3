"""Display thinning: compared with slow, obvious loops over the buckets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reporting.downsample import bucket_means, minmax_indices


def reference_minmax(y: np.ndarray, buckets: int) -> set[int]:
    n = len(y)
    if n <= 4 * buckets:
        return set(range(n))
    size = -(-n // buckets)
    keep: set[int] = set()
    for start in range(0, n, size):
        chunk = list(range(start, min(start + size, n)))
        keep.update((chunk[0], chunk[-1]))
        finite = [i for i in chunk if not np.isnan(y[i])]
        if finite:
            keep.add(min(finite, key=lambda i: (y[i], i)))
            keep.add(max(finite, key=lambda i: (y[i], -i)))
    return keep


values = arrays(
    np.float64,
    st.integers(0, 400),
    elements=st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))),
)


@settings(max_examples=200, deadline=None)
@given(y=values, buckets=st.integers(1, 60))
def test_minmax_indices_equal_the_reference(y: np.ndarray, buckets: int) -> None:
    got = minmax_indices(y, buckets)
    assert set(got.tolist()) == reference_minmax(y, buckets)
    assert np.all(np.diff(got) > 0)
    assert len(got) <= max(len(y) if len(y) <= 4 * buckets else 0, 4 * buckets)


def test_minmax_indices_keep_a_spike_and_the_ends() -> None:
    y = np.sin(np.linspace(0, 50, 200_000))
    y[123_457] = 9.0
    y[7] = -9.0
    keep = minmax_indices(y, 1000)
    assert len(keep) <= 4000
    assert {0, 7, 123_457, 199_999} <= set(keep.tolist())


@settings(max_examples=200, deadline=None)
@given(y=values, buckets=st.integers(1, 60))
def test_bucket_means_equal_the_reference(y: np.ndarray, buckets: int) -> None:
    x = np.arange(len(y)) * 10
    xs, means = bucket_means(x, y, buckets)
    if len(y) <= buckets:
        assert (xs is x and means is y) or np.array_equal(means, y, equal_nan=True)
        return
    size = -(-len(y) // buckets)
    starts = list(range(0, len(y), size))
    assert xs.tolist() == [x[i] for i in starts]
    for start, mean in zip(starts, means, strict=True):
        chunk = y[start : start + size]
        chunk = chunk[~np.isnan(chunk)]
        if len(chunk):
            assert mean == pytest.approx(chunk.mean(), rel=1e-9, abs=1e-6)
        else:
            assert np.isnan(mean)


def test_bucket_means_of_rows_keep_row_sums() -> None:
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(3), size=10_000)
    _, means = bucket_means(np.arange(10_000), weights, 100)
    assert means.shape == (100, 3)
    np.testing.assert_allclose(means.sum(axis=1), 1.0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        minmax_indices(np.arange(10.0), 0)
    with pytest.raises(ValueError, match="x has 3 points"):
        bucket_means(np.arange(3), np.arange(4.0), 1)
