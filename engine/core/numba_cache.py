"""Keeping numba's on-disk caches true to the sources.

Numba's cache (``cache=True``) checks only the source file of the function it compiled,
not the files of the kernels that function calls: after an edit to
``strategies/meta/step.py``, ``strategies/marl/env.py``'s cached batch kernel would still
run the old ``_update_nb`` compiled into it, silently. Each package with kernels calls
:func:`drop_stale_numba_cache` from its ``__init__``: a digest of all the package's
sources (every ``.py`` file below it) is compared with the one stored beside its cache,
and when it differs every cache file of the package is removed, to be rebuilt on use.
A package whose kernels compile functions of another (the strategies compile the
broker's cost rule, :mod:`brokers.costs`) names those files in ``also``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["drop_stale_numba_cache"]

STAMP = "numba-sources.sha256"


def drop_stale_numba_cache(package: str, also: Sequence[str] = ()) -> None:
    """Drop the numba cache files below the folder of ``package`` (a package's
    ``__file__``) when any of its sources, or of the files ``also`` (relative to the
    folder above the package), changed since they were written."""
    if os.environ.get("NUMBA_CACHE_DIR"):  # the user keeps the cache elsewhere
        return
    root = Path(package).resolve().parent
    sources = sorted(root.rglob("*.py"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    for name in also:
        digest.update(name.encode())
        digest.update((root.parent / name).read_bytes())
    value = digest.hexdigest()
    stamp = root / "__pycache__" / STAMP
    try:
        if stamp.exists() and stamp.read_text() == value:
            return
        for cache in {path.parent / "__pycache__" for path in sources}:
            if cache.is_dir():
                for pattern in ("*.nbi", "*.nbc"):
                    for item in cache.glob(pattern):
                        item.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(value)
    except OSError:  # a read-only install: numba's own rules apply
        return
