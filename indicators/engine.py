"""The feature engine on the bus: one :class:`~engine.core.events.Bar` in, one ``Features`` out.

:class:`FeatureEngine` keeps a :class:`~indicators.streaming.FeatureState` per symbol
and, for every bar, publishes :class:`~engine.core.events.Features` with the 13 values, the
three agents' slices (:func:`indicators.features.agent_inputs` encodings) and a
``warm`` flag (:func:`indicators.features.warm_mask` semantics: past the warm-up and
every agent input finite). Subscribed before the agents, it runs first on each bar, so
the agents see the features of the bar that just closed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import itemgetter

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.events import Bar, Features
from indicators.features import LVN_DISTANCE_CAP, MLMI_SLICE, NWRQK_SLICE, REGIME_SLICE
from indicators.params import IndicatorParams
from indicators.streaming import FeatureState

__all__ = ["FeatureEngine"]

_LVN_DISTANCE = NWRQK_SLICE.index(4)
_LVN_STRENGTH = NWRQK_SLICE.index(5)


def _picker(indices: tuple[int, ...]) -> Callable[[list[float]], tuple[float, ...]]:
    """values -> tuple(values[i] for i in indices), in one C call."""
    if len(indices) == 1:
        return lambda values: (values[indices[0]],)
    return itemgetter(*indices)


_mlmi_of = _picker(MLMI_SLICE)
_nwrqk_of = _picker(NWRQK_SLICE)
_regime_of = _picker(REGIME_SLICE)
_isfinite = math.isfinite


class FeatureEngine:
    """Publishes the features of every bar of ``symbol``."""

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        symbol: str,
        params: IndicatorParams | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self.symbol = symbol
        self.params = IndicatorParams() if params is None else params
        self.state = FeatureState(self.params)
        self._warmup = self.params.warmup
        self.bars = 0
        self.warm_bars = 0

    def subscribe(self) -> None:
        self._bus.subscribe(Bar, self.on_bar, self.symbol)

    def on_bar(self, bar: Bar) -> None:
        values = self.state.update(
            bar.ts_event, bar.open, bar.high, bar.low, bar.close, bar.volume
        ).tolist()
        mlmi = _mlmi_of(values)
        nwrqk = _nwrqk_of(values)
        if math.isnan(nwrqk[_LVN_DISTANCE]) and nwrqk[_LVN_STRENGTH] == 0.0:
            # no LVN in the window: the distance is capped (agent_inputs encoding)
            patched = list(nwrqk)
            patched[_LVN_DISTANCE] = LVN_DISTANCE_CAP
            nwrqk = tuple(patched)
        regime = _regime_of(values)
        warm = self.bars >= self._warmup and all(map(_isfinite, mlmi + nwrqk + regime))
        self.bars += 1
        self.warm_bars += warm
        bus = self._bus
        bus.publish(
            Features(
                ts_event=bar.ts_event,
                ts_init=self._clock.now_ns(),
                seq=bus.next_seq(),
                symbol=bar.symbol,
                values=tuple(values),
                mlmi=mlmi,
                nwrqk=nwrqk,
                regime=regime,
                warm=warm,
            )
        )
