"""Feed integrity for paper runs: implausible bars are quarantined, gaps stop the run.

:class:`engine.core.wire.FeedGate` drops what is malformed, duplicated or out of order.
What passes it is a well-formed bar that may still be false: forged, corrupt, or
one of a stretch the broker lost. :class:`FeedGuard` judges each such bar against
the last accepted one (feed sequence number ``L``, bar time ``T``, close ``C``)
before anything trades on it:

* **Quarantine** (dropped with a logged reason, counted in the run's state,
  never advancing the stored sequence, so the real bar of that number is still
  taken when it comes):

  - a sequence number more than ``max_gap`` + 1 ahead of ``L`` (a forged bar
    numbered 10^9 would otherwise make every real bar a duplicate);
  - a bar time that does not fit its number: ``k`` steps ahead of ``L`` must be at
    least ``k`` bar lengths after ``T``, and no bar may end later than the wall
    clock plus one bar length;
  - a price above ``data.max_price`` or a volume above ``data.max_volume``;
  - an open, high, low or close more than ``1 + max_jump`` times ``C`` or less than
    ``C / (1 + max_jump)`` (``--max-jump 4``: a factor of 5 either way).

  With ``on_implausible = "halt"`` the run stops at such a bar instead. It also
  stops after :data:`MAX_QUARANTINED_IN_A_ROW` quarantined bars in a row: a market
  that really moved beyond ``max_jump`` is not traded on silently forever.

* **Gap**: a plausible bar numbered ``L + 1 + m`` with ``m > 0`` means ``m`` bars
  were never received. With ``on_gap = "halt"`` (the default of a paper run) the
  run stops before it, leaving that bar unacknowledged, and stores the gap as
  ``halted``; once the missing bars arrive (a restart of the run re-reads its
  queue) it goes on as if nothing happened. With ``on_gap = "continue"`` it
  trades on and stores the gap as ``skipped``: ``emarl status`` and the report
  show every gap with its sequence range.

The guard is plain synchronous code with no I/O; :class:`engine.app.paper.PaperTrader`
stores what it decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from engine.core.errors import ConfigError
from engine.core.events import Bar

__all__ = [
    "ACCEPT",
    "DEFAULT_MAX_GAP",
    "DEFAULT_MAX_JUMP",
    "HALT",
    "MAX_QUARANTINED_IN_A_ROW",
    "QUARANTINE",
    "FeedGuard",
    "FeedLimits",
    "Gap",
    "Judgement",
]

ACCEPT: Final = "accept"
QUARANTINE: Final = "quarantine"
HALT: Final = "halt"

DEFAULT_MAX_GAP: Final = 1_000
DEFAULT_MAX_JUMP: Final = 4.0
MAX_QUARANTINED_IN_A_ROW: Final = 5

GapPolicy = Literal["halt", "continue"]
ImplausiblePolicy = Literal["drop", "halt"]


@dataclass(frozen=True)
class FeedLimits:
    """What a paper run accepts from its feed (see the module docstring)."""

    bar_ns: int
    max_gap: int = DEFAULT_MAX_GAP
    max_jump: float = DEFAULT_MAX_JUMP
    on_gap: GapPolicy = "halt"
    on_implausible: ImplausiblePolicy = "drop"
    max_price: float = 1e15
    max_volume: float = 1e18

    def check(self) -> None:
        if self.max_gap < 0:
            raise ConfigError(f"--max-gap must be zero or more bars, got {self.max_gap}")
        if not (self.max_jump > 0 and math.isfinite(self.max_jump)):
            raise ConfigError(f"--max-jump must be a positive number, got {self.max_jump}")
        if self.on_gap not in ("halt", "continue"):
            raise ConfigError(f"--on-gap must be 'halt' or 'continue', got {self.on_gap!r}")
        if self.on_implausible not in ("drop", "halt"):
            raise ConfigError(
                f"--on-implausible must be 'drop' or 'halt', got {self.on_implausible!r}"
            )


@dataclass(frozen=True)
class Gap:
    """Feed sequence numbers ``first..last`` never received, between two bar times."""

    first: int
    last: int
    after_ts: int
    before_ts: int

    @property
    def bars(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}..{self.last}"
        return f"{self.bars:,} bar(s) never received (feed seq {span})"


@dataclass(frozen=True)
class Judgement:
    """``accept`` (with the gap it closes, if any), ``quarantine`` or ``halt``."""

    action: str
    reason: str = ""
    gap: Gap | None = None


class FeedGuard:
    """Judges each well-formed bar of a feed (module docstring)."""

    def __init__(self, limits: FeedLimits, per_slice: int = 1) -> None:
        limits.check()
        self.limits = limits
        #: a universe's symbols: the most bars one time slice holds (see _implausible)
        self.per_slice = per_slice
        self.log_jump = math.log1p(limits.max_jump)
        self.last_close: float | None = None
        self.in_a_row = 0

    def judge(self, seq: int, bar: Bar, last_seq: int, last_ts: int, now_ns: int) -> Judgement:
        """The judgement of bar ``seq`` after the last accepted one (``last_seq`` 0: none)."""
        problem = self._implausible(seq, bar, last_seq, last_ts, now_ns)
        if problem is not None:
            self.in_a_row += 1
            reason = f"seq {seq}: {problem}"
            if self.limits.on_implausible == "halt":
                return Judgement(HALT, f"implausible bar: {reason} (--on-implausible halt)")
            if self.in_a_row >= MAX_QUARANTINED_IN_A_ROW:
                return Judgement(
                    HALT,
                    f"{self.in_a_row} bars in a row quarantined, the last {reason}: the feed "
                    "is broken or the market moved beyond --max-jump; check it and start "
                    "the run again (with a larger --max-jump if the prices are real)",
                )
            return Judgement(QUARANTINE, reason)
        missing = seq - last_seq - 1 if last_seq else 0
        gap = Gap(last_seq + 1, seq - 1, last_ts, bar.ts_event) if missing > 0 else None
        if gap is not None and self.limits.on_gap == "halt":
            return Judgement(
                HALT,
                f"feed gap: {gap.describe()} before seq {seq}; the run stops here, and at "
                f"seq {seq} again on each start (the broker gives that unacknowledged bar "
                "first): start it with --on-gap continue to trade on without them (the gap "
                "stays on record)",
                gap,
            )
        return Judgement(ACCEPT, gap=gap)

    def accepted(self, close: float) -> None:
        """Record an accepted bar's close (the next reference price)."""
        self.last_close = close
        self.in_a_row = 0

    def _implausible(
        self, seq: int, bar: Bar, last_seq: int, last_ts: int, now_ns: int
    ) -> str | None:
        limits = self.limits
        if last_seq:
            missing = seq - last_seq - 1
            if missing > limits.max_gap:
                return (
                    f"sequence number {missing:,} bars ahead of the last accepted (seq "
                    f"{last_seq}; --max-gap {limits.max_gap})"
                )
            steps = seq - last_seq
            n = self.per_slice
            if n > 1:  # a universe: k bar lengths later, at most (k + 1) n - 1 bars
                slices = (bar.ts_event - last_ts) // limits.bar_ns
                if steps > (slices + 1) * n - 1:
                    return (
                        f"bar time does not fit its sequence number: {steps} step(s) after "
                        f"the bar at seq {last_seq} hold more than the {n} symbols' bars of "
                        f"{slices + 1} time slice(s); it is "
                        f"{(bar.ts_event - last_ts) / 60e9:g} min later"
                    )
            elif bar.ts_event - last_ts < steps * limits.bar_ns:
                return (
                    f"bar time does not fit its sequence number: {steps} step(s) after the bar "
                    f"at seq {last_seq} need {steps} bar length(s), it is "
                    f"{(bar.ts_event - last_ts) / 60e9:g} min later"
                )
        if bar.ts_event > now_ns + limits.bar_ns:
            return (
                f"bar time is {(bar.ts_event - now_ns) / 60e9:,.1f} min ahead of the wall "
                "clock (at most one bar length allowed)"
            )
        prices = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
        for name, price in prices.items():
            if price > limits.max_price:
                return f"{name} {price!r} above data.max_price {limits.max_price:g}"
        if bar.volume > limits.max_volume:
            return f"volume {bar.volume!r} above data.max_volume {limits.max_volume:g}"
        reference = self.last_close
        if reference is not None:
            for name, price in prices.items():
                if abs(math.log(price / reference)) > self.log_jump:
                    return (
                        f"{name} {price!r} jumps from the last accepted close {reference!r} "
                        f"by a factor of {max(price / reference, reference / price):,.3g} "
                        f"(--max-jump {limits.max_jump:g} allows {1 + limits.max_jump:g})"
                    )
        return None
