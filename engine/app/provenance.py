"""What a checkpoint was trained on, and whether a run may trade with it.

``emarl train`` writes the training bars into the checkpoint's ``.json`` under ``data``
(:func:`training_data_record`): the symbol, the bar length and time zone, the first and
last bar (their end times, ISO and int ns UTC), the number of bars (and of warm bars) and
a SHA-256 fingerprint of their OHLCV arrays (:func:`engine.feeds.bars.bars_fingerprint`).

Reading that record needs no torch. Every run that trades with a checkpoint reads it
(:func:`read_training_record`) to store its provenance (the fingerprint of the weights
file) and to split its figures into the bars the checkpoint was trained on (in sample)
and the bars after them (out of sample). :func:`check_transfer` refuses a checkpoint
trained on another bar length or time zone unless the scenario says
``strategy.allow_transfer = true``; one trained on another symbol gets a warning.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError

__all__ = [
    "TrainingRecord",
    "check_transfer",
    "checkpoint_path",
    "file_fingerprint",
    "read_training_record",
    "training_data_record",
]


def checkpoint_path(config: Any) -> Path:
    """A learned scenario's ``strategy.checkpoint``, relative to the scenario's folder
    (:class:`ConfigError` for another strategy: it has none)."""
    kind = config.strategy.__struct_config__.tag
    if kind != "mappo_ensemble":
        raise ConfigError(
            f"[strategy] kind = {kind!r} has no checkpoint to train or read: that takes the "
            "learned ensemble, kind = 'mappo_ensemble'"
        )
    path = Path(config.strategy.checkpoint)
    return path if path.is_absolute() else (Path(config.base_dir) / path).resolve()


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_data_record(config: Any, data: Any, warm_bars: int) -> dict[str, Any]:
    """The ``data`` section of a checkpoint's ``.json``: the bars it was trained on."""
    # the bar loader (pandas) loads only here: the CLI reads training records without it
    from engine.feeds.bars import bars_fingerprint

    return {
        "symbol": config.universe[0].symbol,
        "bar_minutes": config.data.bar_minutes,
        "timezone": config.data.timezone,
        "start": config.data.start,
        "end": config.data.end,
        "first_bar": _iso(int(data.ts[0])),
        "last_bar": _iso(int(data.ts[-1])),
        "first_bar_ns": int(data.ts[0]),
        "last_bar_ns": int(data.ts[-1]),
        "bars": len(data),
        "warm_bars": warm_bars,
        "fingerprint": bars_fingerprint(data),
    }


@dataclass(frozen=True)
class TrainingRecord:
    """A checkpoint's identity and its training bars."""

    checkpoint: Path
    fingerprint: str
    symbol: str
    bar_minutes: int
    timezone: str
    first_bar_ns: int
    last_bar_ns: int
    bars: int
    data_fingerprint: str
    #: the validation window that chose the checkpoint (first, last bar end), if any
    validation: tuple[int, int] | None = None

    def describe(self) -> str:
        """E.g. ``000338.SZ 30-minute bars 2007-04-30 02:00 .. 2016-12-30 07:00 UTC
        (18,344 bars)``."""

        def day(ns: int) -> str:
            return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")

        return (
            f"{self.symbol} {self.bar_minutes}-minute bars {day(self.first_bar_ns)} .. "
            f"{day(self.last_bar_ns)} UTC ({self.bars:,} bars)"
        )


def read_training_record(path: Path) -> TrainingRecord:
    """The training record of the checkpoint at ``path`` (``.pt``; its ``.json`` beside it).

    A checkpoint whose ``.json`` does not record its training bars is refused: a run
    could not say which of its figures are in sample.
    """
    weights = path.with_suffix(".pt")
    meta_path = path.with_suffix(".json")
    for file in (weights, meta_path):
        if not file.is_file():
            raise ConfigError(
                f"checkpoint file {file} not found (train one with `emarl train SCENARIO`)"
            )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{meta_path}: not valid JSON: {exc}") from exc
    data = meta.get("data") if isinstance(meta, dict) else None
    needed = ("symbol", "bar_minutes", "timezone", "first_bar_ns", "last_bar_ns", "bars")
    if not isinstance(data, dict) or any(key not in data for key in needed):
        raise ConfigError(
            f"{meta_path}: the checkpoint does not record the bars it was trained on "
            "(symbol, bar length, time zone, first and last bar), so a run cannot tell its "
            "in-sample figures from the rest; retrain it with `emarl train SCENARIO`"
        )
    try:
        return TrainingRecord(
            checkpoint=weights,
            fingerprint=file_fingerprint(weights),
            symbol=str(data["symbol"]),
            bar_minutes=int(data["bar_minutes"]),
            timezone=str(data["timezone"]),
            first_bar_ns=int(data["first_bar_ns"]),
            last_bar_ns=int(data["last_bar_ns"]),
            bars=int(data["bars"]),
            data_fingerprint=str(data.get("fingerprint", "")),
            validation=(
                (int(data["validation"]["first_bar_ns"]), int(data["validation"]["last_bar_ns"]))
                if isinstance(data.get("validation"), dict)
                else None
            ),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{meta_path}: a field of 'data' is malformed: {exc}") from None


def check_transfer(record: TrainingRecord, config: Any) -> str | None:
    """Refuse a checkpoint trained on another bar length or time zone than the scenario's
    (unless ``strategy.allow_transfer``); return a warning line when it was trained on
    another symbol, else None."""
    data = config.data
    differences = []
    if record.bar_minutes != data.bar_minutes:
        differences.append(
            f"{record.bar_minutes}-minute bars, the scenario has {data.bar_minutes}-minute bars"
        )
    if record.timezone != data.timezone:
        differences.append(f"time zone {record.timezone}, the scenario's is {data.timezone}")
    if differences and not getattr(config.strategy, "allow_transfer", False):
        raise ConfigError(
            f"checkpoint {record.checkpoint} was trained on {'; '.join(differences)}; "
            "set strategy.allow_transfer = true to trade with it anyway"
        )
    symbol = config.universe[0].symbol
    if record.symbol != symbol:
        return (
            f"checkpoint {record.checkpoint.name} was trained on {record.symbol}, "
            f"not {symbol}: its figures here are a transfer, not the market it learned"
        )
    return None
