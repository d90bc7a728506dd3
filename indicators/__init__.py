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

import hashlib
import os
from pathlib import Path


def _drop_stale_numba_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    stamp_value = digest.hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "numba-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == stamp_value:
            return
        if cache.is_dir():
            for pattern in ("*.nbi", "*.nbc"):
                for item in cache.glob(pattern):
                    item.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(stamp_value)
    except OSError:  # read-only install: numba falls back to its own cache rules
        return


_drop_stale_numba_cache()
