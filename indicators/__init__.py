"""Numba indicator kernels and the 13-column feature matrix of emarl.

Public entry points: :func:`indicators.features.build_features` (batch),
:class:`indicators.streaming.FeatureState` (one bar at a time) and
:class:`indicators.params.IndicatorParams`.

Numba's on-disk cache (``cache=True``) checks only the source file of the function it
compiled, not the files of the kernels that function calls, so an edit to
``core.py`` would leave a stale compiled copy inside, say, ``streaming.py``'s cache.
On import, a digest of all the package's sources is compared with the one stored next
to the cache; when it differs the package's cache files are removed and rebuilt.
"""

from __future__ import annotations

from engine.core.numba_cache import drop_stale_numba_cache

drop_stale_numba_cache(__file__)
