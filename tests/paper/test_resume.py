"""Resume from the database, on SQLite and PostgreSQL, without a broker.

The core is driven with feed messages directly: a run is cut off after some
bars (its process state thrown away, as after SIGKILL), started again from
the database, and fed the rest. Its ledger must equal an uninterrupted run's.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from engine.app.backtest import load_data, run_backtest
from engine.app.paper import PaperOptions, PaperTrader, open_paper_run
from engine.app.scenario import ScenarioConfig, parse_scenario
from engine.core.errors import ConfigError, ResumeError
from engine.core.events import Bar, RunFinished
from engine.core.wire import END, PROCESS, pack
from engine.feeds.bars import BarData, load_bars
from engine.feeds.mqtt import MqttBus
from engine.feeds.universe import Universe
from storage.db import connect
from storage.models import PaperBar, PortfolioSnapshotRow
from tests.conftest import synthetic_scenario
from tests.storage.test_reconnect import cut_once, cuts

FEED = "feed"


def meta_scenario(bars: int) -> ScenarioConfig:
    """Two scripted agents (one random) under the meta-investor: state in RNG and weights."""
    return synthetic_scenario(
        bars,
        run='name = "meta"\nseed = 5',
        strategy=(
            'kind = "scripted_ensemble"\nagents = ["random", "neutral", "random"]\n'
            "max_position = 500\nconfidence_threshold = -2.0"
        ),
        broker="commission_bps = 1.0\nslippage_bps = 0.5",
        # a paper run has no known last bar: the options need a rolling horizon
        **{"strategy.meta": "expiry_bars = 48"},
    )


def sma_scenario(bars: int) -> ScenarioConfig:
    return synthetic_scenario(bars, strategy="fast = 3\nslow = 8\nquantity = 50")


def messages(data: BarData) -> list[tuple[str, bytes]]:
    out = []
    for i in range(len(data)):
        bar = Bar(
            ts_event=int(data.ts[i]),
            ts_init=0,
            seq=i + 1,
            symbol=data.symbol,
            open=float(data.open[i]),
            high=float(data.high[i]),
            low=float(data.low[i]),
            close=float(data.close[i]),
            volume=float(data.volume[i]),
        )
        out.append((f"emarl/{FEED}/bar/{data.symbol}", pack(FEED, i + 1, bar)))
    marker = RunFinished(ts_event=0, ts_init=0, seq=len(data) + 1, bars=len(data))
    out.append((f"emarl/{FEED}/run_finished/{data.symbol}", pack(FEED, len(data) + 1, marker)))
    return out


def start(config: ScenarioConfig, url: str, name: str) -> PaperTrader:
    engine = connect(url)
    options = PaperOptions(run_name=name, feed=FEED)
    session, state, resumed = open_paper_run(engine, config, options, "", MqttBus(name))
    trader = PaperTrader(config, session, feed=FEED)
    if resumed:
        trader.resume(state)
    return trader


def feed(trader: PaperTrader, items: list[tuple[str, bytes]]) -> list[str]:
    return [trader.on_message(topic, data).action for topic, data in items]


def ledger(url: str, run_id: int) -> dict[str, list[tuple]]:
    engine = connect(url)
    queries = {
        "fills": "SELECT * FROM fills WHERE run_id = :r ORDER BY seq",
        "snapshots": "SELECT * FROM portfolio_snapshots WHERE run_id = :r ORDER BY seq",
        "orders": "SELECT seq, order_id, side, quantity, order_type FROM orders "
        "WHERE run_id = :r ORDER BY seq",
        "valuations": "SELECT seq, ts_event, agent_id, share_price, weight, option_value "
        "FROM valuations WHERE run_id = :r ORDER BY seq",
        "order_events": "SELECT seq, order_id, event, reason FROM order_events "
        "WHERE run_id = :r ORDER BY seq",
        "bars": "SELECT feed_seq, seq, last_seq, ts_event, close, digest FROM paper_bars "
        "WHERE run_id = :r ORDER BY feed_seq",
    }
    with engine.connect() as connection:
        out = {}
        for key, sql in queries.items():
            rows = connection.execute(text(sql), {"r": run_id}).all()
            # run_id differs between the runs; it is the first column of the full-row tables
            out[key] = [
                tuple(row)[1:] if key in ("fills", "snapshots") else tuple(row) for row in rows
            ]
    return out


@pytest.mark.parametrize("make", [sma_scenario, meta_scenario], ids=["sma", "meta"])
def test_resume_after_losing_the_process_equals_an_uninterrupted_run(db_url: str, make) -> None:
    config = make(200)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)

    whole = start(config, db_url, "whole")
    actions = feed(whole, items)
    assert actions.count(PROCESS) == 200 and actions[-1] == END

    interrupted = start(config, db_url, "cut")
    feed(interrupted, items[:61])
    del interrupted  # the process dies: nothing in memory survives
    resumed = start(config, db_url, "cut")
    assert resumed.bars == 61 and resumed.gate.last_seq == 61
    # the broker sends again what was not acknowledged: the last bar is a duplicate
    again = feed(resumed, items[60:143])
    assert again[0] == "drop" and again[1:].count(PROCESS) == 82
    resumed = start(config, db_url, "cut")
    assert feed(resumed, items[143:])[-1] == END

    expected = ledger(db_url, whole.run_id)
    got = ledger(db_url, resumed.run_id)
    assert len(expected["fills"]) > 5
    assert len(expected["snapshots"]) == 200
    for key in ("fills", "snapshots", "orders", "order_events", "valuations"):
        assert got[key] == expected[key], key
    # same bars, same bus numbering; the hashes differ only by arrival times
    assert [b[:5] for b in got["bars"]] == [b[:5] for b in expected["bars"]]
    if make is meta_scenario:
        assert len(expected["valuations"]) > 100


@pytest.mark.service
def test_a_bar_whose_transaction_the_server_cuts_is_stored_once_without_a_restart(
    postgres_url: str,
) -> None:
    """PostgreSQL closes the paper run's connection in the middle of bar 80's transaction
    (a restart or a failover would): the bar is written again on a new connection and
    the run goes on to the end, its ledger that of a run never cut. It used to fail and
    need a restart to resume."""
    config = meta_scenario(200)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)
    whole = start(config, postgres_url, "whole")
    assert feed(whole, items)[-1] == END
    cut_once(postgres_url, "paper_bars", "feed_seq", after=79)
    trader = start(config, postgres_url, "cut")
    actions = feed(trader, items)
    assert actions.count(PROCESS) == 200 and actions[-1] == END
    assert cuts(postgres_url) == 1
    expected = ledger(postgres_url, whole.run_id)
    got = ledger(postgres_url, trader.run_id)
    for key in ("fills", "snapshots", "orders", "order_events", "valuations"):
        assert got[key] == expected[key], key
    assert [b[:5] for b in got["bars"]] == [b[:5] for b in expected["bars"]]


@pytest.mark.service
def test_a_dropped_message_whose_count_the_server_cuts_is_counted_once(
    postgres_url: str,
) -> None:
    """The connection is cut as the paper state's drop count is updated: the count is
    written again on a new connection, once."""
    trader = start(sma_scenario(50), postgres_url, "drops")
    cut_once(postgres_url, "paper_state", "dropped", after=0, event="UPDATE")
    trader.drop("seq 9: late")
    assert cuts(postgres_url) == 1
    with connect(postgres_url).connect() as connection:
        state = connection.execute(
            text("SELECT dropped, last_drop FROM paper_state WHERE run_id = :r"),
            {"r": trader.run_id},
        ).one()
    assert tuple(state) == (1, "seq 9: late")


def universe_messages(data: Universe) -> list[tuple[str, bytes]]:
    """A universe's feed: every bar on its symbol's topic, one sequence, in slice order."""
    out = []
    for i, j in enumerate(data.symbol_index.tolist()):
        symbol = data.symbols[j]
        bar = Bar(ts_event=int(data.ts[i]), ts_init=0, seq=i + 1, symbol=symbol,
                  open=float(data.open[i]), high=float(data.high[i]), low=float(data.low[i]),
                  close=float(data.close[i]), volume=float(data.volume[i]))  # fmt: skip
        out.append((f"emarl/{FEED}/bar/{symbol}", pack(FEED, i + 1, bar)))
    marker = RunFinished(ts_event=0, ts_init=0, seq=len(data) + 1, bars=len(data))
    out.append((f"emarl/{FEED}/run_finished/{data.symbols[0]}", pack(FEED, len(data) + 1, marker)))
    return out


def test_a_universe_ensemble_resumes_as_an_uninterrupted_run_and_as_its_backtest(
    sqlite_url: str,
) -> None:
    # two symbols, a meta-investor each; the random agents draw from one generator
    config = parse_scenario(
        '[run]\nname = "meta"\nseed = 5\n[data]\nsource = "synthetic"\n'
        "[data.synthetic]\nbars = 150\n"
        '[[instruments]]\nsymbol = "A"\n[[instruments]]\nsymbol = "B"\n'
        "[broker]\ncommission_bps = 1.0\nslippage_bps = 0.5\n"
        '[strategy]\nkind = "scripted_ensemble"\nagents = ["random", "neutral", "random"]\n'
        "max_position = 500\nconfidence_threshold = -2.0\n"
        "[strategy.meta]\nexpiry_bars = 48\n"
    )
    data = load_data(config)
    assert isinstance(data, Universe) and len(data) == 300
    items = universe_messages(data)
    whole = start(config, sqlite_url, "whole")
    assert feed(whole, items)[-1] == END
    interrupted = start(config, sqlite_url, "cut")
    feed(interrupted, items[:77])
    del interrupted
    resumed = start(config, sqlite_url, "cut")
    assert resumed.bars == 77
    assert feed(resumed, items[76:])[-1] == END
    expected = ledger(sqlite_url, whole.run_id)
    got = ledger(sqlite_url, resumed.run_id)
    for key in ("fills", "snapshots", "orders", "order_events", "valuations"):
        assert got[key] == expected[key], key
    fills = expected["fills"]
    assert {f[6] for f in fills} == {"A", "B"}, "both symbols trade"  # column 7: symbol
    # the same decisions as the backtest of the same bars
    backtest = run_backtest(config, db_url=sqlite_url)
    assert backtest.run_id is not None
    assert [f[3:] for f in ledger(sqlite_url, backtest.run_id)["fills"]] == [f[3:] for f in fills]


def test_resume_refuses_a_database_that_does_not_match_its_bars(sqlite_url: str) -> None:
    config = sma_scenario(120)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)
    trader = start(config, sqlite_url, "tampered")
    feed(trader, items[:100])
    engine = connect(sqlite_url)
    with engine.begin() as connection:
        last = connection.execute(
            text("SELECT max(seq) FROM portfolio_snapshots WHERE run_id = :r"),
            {"r": trader.run_id},
        ).scalar()
        connection.execute(
            update(PortfolioSnapshotRow)
            .where(PortfolioSnapshotRow.run_id == trader.run_id, PortfolioSnapshotRow.seq == last)
            .values(cash=PortfolioSnapshotRow.cash + 1.0)
        )
    with pytest.raises(ResumeError, match="cash rebuilt to"):
        start(config, sqlite_url, "tampered")
    with engine.begin() as connection:
        connection.execute(
            update(PaperBar)
            .where(PaperBar.run_id == trader.run_id, PaperBar.feed_seq == 50)
            .values(close=PaperBar.close * 1.01)
        )
    with pytest.raises(ResumeError, match="stored bar 50 .* does not reproduce"):
        start(config, sqlite_url, "tampered")


def test_resume_refuses_another_scenario_and_a_completed_run(sqlite_url: str) -> None:
    config = sma_scenario(50)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)
    feed(start(config, sqlite_url, "guarded"), items[:10])
    with pytest.raises(ConfigError, match="was started with another scenario"):
        start(sma_scenario(60), sqlite_url, "guarded")
    from storage.paper import find_paper_run, set_run_status

    engine = connect(sqlite_url)
    found = find_paper_run(engine, "guarded")
    assert found is not None
    set_run_status(engine, found.run_id, "completed")
    with pytest.raises(ConfigError, match="is completed"):
        start(config, sqlite_url, "guarded")


def test_two_processes_cannot_both_advance_a_run(sqlite_url: str) -> None:
    from engine.core.errors import StorageError

    config = sma_scenario(40)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    items = messages(data)
    first = start(config, sqlite_url, "twice")
    feed(first, items[:5])
    second = start(config, sqlite_url, "twice")
    feed(second, items[5:6])
    # the second process committed bar 6; the first cannot store its own bar 6
    with pytest.raises(StorageError, match="another process|UNIQUE constraint|duplicate key"):
        first.on_message(*items[5])
    assert start(config, sqlite_url, "twice").bars == 6


def test_status_reports_position_lag_open_orders_and_agent_weights(sqlite_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from engine.app.cli import app
    from storage.paper import run_status

    config = meta_scenario(120)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    trader = start(config, sqlite_url, "watched")
    feed(trader, messages(data)[:100])
    engine = connect(sqlite_url)
    info = run_status(engine, "watched")
    portfolio = trader.kernel.portfolio
    assert info["kind"] == "paper" and info["status"] == "running"
    assert info["snapshot"]["cash"] == portfolio.cash
    assert info["snapshot"]["position"] == portfolio.position(config.instrument.symbol).quantity
    assert info["feed"]["bars"] == 100 and info["feed"]["last_bar_ns"] == int(data.ts[99])
    assert [a["agent_id"] for a in info["agents"]] == ["random-0", "neutral-1", "random-2"]
    assert abs(sum(a["weight"] for a in info["agents"]) - 1.0) < 1e-9
    working = {o.command.order_id for o in trader.kernel.broker.working_orders}
    assert {o["order_id"] for o in info["open_orders"]} == working
    received = info["feed"]["last_received_ns"]
    stale_after = info["feed"]["stale_after_seconds"] * 1e9
    assert not run_status(engine, "watched", now_ns=received + int(stale_after) - 1)["feed"][
        "stale"
    ]
    assert run_status(engine, "watched", now_ns=received + int(stale_after) + 1)["feed"]["stale"]

    runner = CliRunner()
    table = runner.invoke(app, ["status", "watched", "--db", sqlite_url])
    assert table.exit_code == 0, table.output
    assert "equity" in table.output and "agent weights" in table.output
    as_json = runner.invoke(
        app, ["status", str(trader.run_id), "--db", sqlite_url, "--format", "json"]
    )
    assert json.loads(as_json.output)["feed"]["bars"] == 100
    missing = runner.invoke(app, ["status", "nope", "--db", sqlite_url])
    assert missing.exit_code == 3
