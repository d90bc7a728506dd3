"""Clocks: simulated time for backtests, wall-clock time for paper trading (int ns UTC)."""

from __future__ import annotations

import time

__all__ = ["Clock", "SimulatedClock", "WallClock"]


class Clock:
    def now_ns(self) -> int:
        raise NotImplementedError


class SimulatedClock(Clock):
    """Time moves only when the engine sets it (to each bar's close)."""

    def __init__(self, start_ns: int = 0) -> None:
        self.time_ns = start_ns

    def now_ns(self) -> int:
        return self.time_ns

    def set(self, time_ns: int) -> None:
        if time_ns < self.time_ns:
            raise ValueError(f"simulated time cannot go back: {time_ns} < {self.time_ns}")
        self.time_ns = time_ns


class WallClock(Clock):
    def now_ns(self) -> int:
        return time.time_ns()
