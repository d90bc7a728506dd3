"""The feed guard's judgements, and a paper core that quarantines, halts and resumes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app.paper import PaperOptions, PaperTrader, open_paper_run
from engine.core.errors import ConfigError
from engine.core.events import Bar
from engine.core.wire import DROP, PROCESS, pack
from engine.feeds.guard import (
    ACCEPT,
    HALT,
    MAX_QUARANTINED_IN_A_ROW,
    QUARANTINE,
    FeedGuard,
    FeedLimits,
)
from engine.feeds.mqtt import MqttBus
from storage.db import connect
from storage.paper import load_state
from tests.paper.test_resume import FEED, messages, sma_scenario

BAR_NS = 1_800_000_000_000
NOW = 10_000 * BAR_NS


def bar(seq: int, close: float = 10.0, ts: int | None = None) -> Bar:
    return Bar(ts_event=seq * BAR_NS if ts is None else ts, ts_init=0, seq=seq, symbol="S",
               open=close, high=close, low=close, close=close, volume=1.0)  # fmt: skip


def guard(**limits: object) -> FeedGuard:
    judge = FeedGuard(FeedLimits(bar_ns=BAR_NS, **limits))  # type: ignore[arg-type]
    judge.accepted(bar(10).close)
    return judge


def test_a_sequence_jump_beyond_max_gap_is_quarantined_and_one_within_is_a_gap() -> None:
    far = guard().judge(10**9, bar(10**9), 10, 10 * BAR_NS, NOW + 10**9 * BAR_NS)
    assert far.action == QUARANTINE and "--max-gap 1000" in far.reason
    near = guard(on_gap="continue").judge(15, bar(15), 10, 10 * BAR_NS, NOW)
    assert near.action == ACCEPT and near.gap is not None
    assert (near.gap.first, near.gap.last, near.gap.bars) == (11, 14, 4)
    halted = guard().judge(15, bar(15), 10, 10 * BAR_NS, NOW)
    assert halted.action == HALT and "4 bar(s) never received (feed seq 11..14)" in halted.reason


def test_a_time_that_does_not_fit_the_sequence_number_is_quarantined() -> None:
    soon = guard().judge(12, bar(12, ts=11 * BAR_NS), 10, 10 * BAR_NS, NOW)
    assert soon.action == QUARANTINE and "2 step(s)" in soon.reason
    ahead = guard().judge(11, bar(11, ts=NOW + 2 * BAR_NS), 10, 10 * BAR_NS, NOW)
    assert ahead.action == QUARANTINE and "ahead of the wall clock" in ahead.reason
    assert guard().judge(11, bar(11, ts=NOW + BAR_NS), 10, 10 * BAR_NS, NOW).action == ACCEPT


@settings(max_examples=200, deadline=None)
@given(factor=st.floats(1e-6, 1e6), jump=st.floats(0.01, 100.0))
def test_a_price_jump_is_quarantined_exactly_beyond_the_factor(factor: float, jump: float) -> None:
    price = 10.0 * factor
    judgement = guard(max_jump=jump).judge(11, bar(11, price), 10, 10 * BAR_NS, NOW)
    # beyond (1 + jump) times the last close 10, or below it divided by (1 + jump)
    outside = abs(math.log(price / 10.0)) > math.log1p(jump)
    assert (judgement.action == QUARANTINE) == outside, (factor, jump, judgement)


def test_implausible_bars_halt_with_halt_policy_or_after_too_many_in_a_row() -> None:
    strict = guard(on_implausible="halt").judge(11, bar(11, 1000.0), 10, 10 * BAR_NS, NOW)
    assert strict.action == HALT and "--on-implausible halt" in strict.reason
    lenient = guard()
    actions = [
        lenient.judge(11, bar(11, 1000.0), 10, 10 * BAR_NS, NOW).action
        for _ in range(MAX_QUARANTINED_IN_A_ROW)
    ]
    assert actions == [QUARANTINE] * (MAX_QUARANTINED_IN_A_ROW - 1) + [HALT]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_gap": -1}, "--max-gap"),
        ({"max_jump": 0.0}, "--max-jump"),
        ({"on_gap": "skip"}, "--on-gap"),
        ({"on_implausible": "ignore"}, "--on-implausible"),
    ],
)
def test_bad_limits_are_config_errors(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedLimits(bar_ns=BAR_NS, **limits).check()  # type: ignore[arg-type]


def trader(config, url: str, name: str) -> PaperTrader:  # type: ignore[no-untyped-def]
    engine = connect(url)
    options = PaperOptions(run_name=name, feed=FEED)
    session, state, resumed = open_paper_run(engine, config, options, "", MqttBus(name))
    core = PaperTrader(config, session, feed=FEED)
    if resumed:
        core.resume(state)
    return core


def test_a_resumed_run_measures_jumps_from_its_stored_close_and_keeps_its_position(
    sqlite_url: str,
) -> None:
    config = sma_scenario(120)
    from engine.feeds.bars import load_bars

    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)
    first = trader(config, sqlite_url, "guarded")
    assert [first.on_message(*item).action for item in items[:60]] == [PROCESS] * 60
    del first  # the process dies
    again = trader(config, sqlite_url, "guarded")
    real = Bar(ts_event=int(data.ts[60]), ts_init=0, seq=61, symbol=data.symbol,
               open=1000.0, high=1000.0, low=1000.0, close=1000.0, volume=1.0)  # fmt: skip
    forged = again.on_message(items[60][0], pack(FEED, 61, real))
    assert forged.action == DROP and forged.quarantined and "jumps" in forged.reason
    state = load_state(again.engine, again.run_id)
    assert state is not None and state["last_feed_seq"] == 60 and state["quarantined"] == 1
    assert again.on_message(*items[60]).action == PROCESS  # the real bar 61


def _most_bars_between(last: int, ts: int, symbols: int) -> int:
    """Brute force: the most sequence steps from the bar at slice ``last`` (the first of
    its slice, at worst) to one at slice ``ts`` (the last of its slice, at best), when
    every slice holds a bar of each of ``symbols`` symbols."""
    events = [(t, j) for t in range(last, ts + 1) for j in range(symbols)]
    return events.index((ts, symbols - 1)) - events.index((last, 0))


@pytest.mark.parametrize("symbols", [2, 3, 5])
def test_a_universes_sequence_may_hold_every_symbols_bars_of_each_time_slice(
    symbols: int,
) -> None:
    judge = FeedGuard(FeedLimits(bar_ns=BAR_NS, on_gap="continue"), per_slice=symbols)
    for later in range(4):
        most = _most_bars_between(0, later, symbols)
        for steps in range(1, most + 3):
            verdict = judge.judge(10 + steps, bar(10 + steps, ts=(10 + later) * BAR_NS), 10,
                                  10 * BAR_NS, NOW)  # fmt: skip
            fits = steps <= most
            assert (verdict.action == ACCEPT) == fits, (later, steps, verdict.reason)
            if not fits:
                assert f"the {symbols} symbols' bars" in verdict.reason
