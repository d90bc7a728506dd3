"""Golden ledgers: the SHA-256 of the fills and snapshots of the shipped scenarios and of a
paper replay, committed in ``ledgers.json``. A change of behaviour shows as a failing test;
regenerate with ``EMARL_UPDATE_GOLDEN=1`` (and review the diff) only in the commit that
means to change the ledgers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from storage.db import connect

LEDGERS = Path(__file__).with_name("ledgers.json")
UPDATE = os.environ.get("EMARL_UPDATE_GOLDEN") == "1"

FILLS = (
    "SELECT seq, ts_event, ts_init, fill_id, order_id, strategy_id, symbol, side, quantity, "
    "price, commission, slippage, filled_quantity, leaves_quantity FROM fills "
    "WHERE run_id = :r ORDER BY seq"
)
SNAPSHOTS = (
    "SELECT seq, ts_event, position, avg_price, mark_price, cash, realised_pnl, equity, fees "
    "FROM portfolio_snapshots WHERE run_id = :r ORDER BY seq"
)


def _digest(rows: list[tuple[Any, ...]]) -> str:
    """SHA-256 of the rows as JSON (floats by their shortest exact repr)."""
    return hashlib.sha256(json.dumps([list(r) for r in rows]).encode()).hexdigest()


def ledger(url: str, run_id: int) -> dict[str, Any]:
    """What the golden file keeps of a stored run: the digests and counts of its fills and
    snapshots, and its final equity (to read a diff by)."""
    with connect(url).connect() as connection:
        fills = [tuple(r) for r in connection.execute(text(FILLS), {"r": run_id}).all()]
        snapshots = [tuple(r) for r in connection.execute(text(SNAPSHOTS), {"r": run_id}).all()]
    return {
        "fills": len(fills),
        "fills_sha256": _digest(fills),
        "snapshots": len(snapshots),
        "snapshots_sha256": _digest(snapshots),
        "final_equity": snapshots[-1][7] if snapshots else None,
    }


def check(name: str, found: dict[str, Any]) -> None:
    """Compare ``found`` with the committed ledger ``name`` (or write it when updating)."""
    stored = json.loads(LEDGERS.read_text()) if LEDGERS.exists() else {}
    if UPDATE:
        stored[name] = found
        LEDGERS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return
    assert name in stored, f"no golden ledger {name!r}: run with EMARL_UPDATE_GOLDEN=1"
    assert found == stored[name], f"the ledger of {name} changed: {found} != {stored[name]}"
