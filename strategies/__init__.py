"""Strategies on the bus: the SMA reference, scripted agents, the learned agents and the
meta-investor. Numba caches of the package are kept true to its sources and to the
broker's cost rule its kernels compile (:mod:`engine.core.numba_cache`)."""

from __future__ import annotations

from engine.core.numba_cache import drop_stale_numba_cache

drop_stale_numba_cache(__file__, also=("brokers/costs.py",))
