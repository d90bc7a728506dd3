"""The live commands: ``paper`` (paper-trade a scenario on bars from MQTT, resuming a
stored run), ``publish`` (replay a bar file onto MQTT) and ``status`` (a run's position,
equity, feed health, open orders and agent weights), with the MQTT connection options
they share.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine.app.cli.common import (
    DbOption,
    IncompleteOption,
    OutputFormat,
    _console,
    _db_url,
    _emit,
    _fail,
    _fmt_time,
    option_groups,
)
from engine.core.errors import ConfigError, EmarlError, HandlerError

MqttUrlOption = Annotated[
    str,
    typer.Option(
        "--bus",
        envvar="EMARL_MQTT_URL",
        help="MQTT broker URL: mqtt://[user[:password]@]host[:port], mqtts:// for TLS.",
    ),
]


def _log_to_stderr(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


UserOption = Annotated[
    str | None, typer.Option("--username", envvar="EMARL_MQTT_USERNAME", help="MQTT user name.")
]
PasswordOption = Annotated[
    str | None, typer.Option("--password", envvar="EMARL_MQTT_PASSWORD", help="MQTT password.")
]
CaOption = Annotated[Path | None, typer.Option("--ca-file", help="CA certificates (turns on TLS).")]
CertOption = Annotated[Path | None, typer.Option("--cert-file", help="TLS client certificate.")]
KeyOption = Annotated[Path | None, typer.Option("--key-file", help="TLS client key.")]
InsecureOption = Annotated[
    bool, typer.Option("--tls-insecure", help="Do not check the broker's certificate.")
]
LogQuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only.")]
FeedKeyOption = Annotated[
    str | None,
    typer.Option(
        "--feed-key",
        envvar="EMARL_FEED_KEY",
        help="Shared key (16 bytes or more): the publisher signs every message (HMAC-SHA256), "
        "the paper run drops unsigned or badly signed ones.",
    ),
]


@dataclass(frozen=True)
class MqttConnection:
    """The options ``paper`` and ``publish`` share: the broker, its login and TLS, and
    the feed's signing key."""

    bus: MqttUrlOption = "mqtt://127.0.0.1:1883"
    username: UserOption = None
    password: PasswordOption = None
    ca_file: CaOption = None
    cert_file: CertOption = None
    key_file: KeyOption = None
    tls_insecure: InsecureOption = False
    feed_key: FeedKeyOption = None

    def settings(self) -> Any:
        """The broker's :class:`~engine.feeds.mqtt.MqttSettings`."""
        from engine.feeds.mqtt import MqttSettings  # loads msgspec: only when connecting

        return MqttSettings.from_url(
            self.bus,
            username=self.username,
            password=self.password,
            ca_file=str(self.ca_file) if self.ca_file else None,
            cert_file=str(self.cert_file) if self.cert_file else None,
            key_file=str(self.key_file) if self.key_file else None,
            tls_insecure=self.tls_insecure,
        )

    def key(self) -> bytes | None:
        """The feed's signing key, checked (None: unsigned)."""
        from engine.core.wire import feed_key  # loads msgspec: only when connecting

        return feed_key(self.feed_key)


GapChoice = Literal["halt", "continue"]
ImplausibleChoice = Literal["drop", "halt"]


@option_groups
def paper(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Run name (default: the scenario's run.name); resumed if stored."
        ),
    ] = None,
    feed: Annotated[
        str, typer.Option(help="Feed to read: bars come from emarl/<feed>/bar/<symbol>.")
    ] = "market",
    new: Annotated[
        bool, typer.Option("--new", help="Start a new run even if one of this name is stored.")
    ] = False,
    max_bars: Annotated[
        int | None, typer.Option("--max-bars", help="Stop after this many new bars.")
    ] = None,
    stale_after: Annotated[
        float, typer.Option("--stale-after", help="Log a stale feed after this many bar lengths.")
    ] = 3.0,
    max_message_bytes: Annotated[
        int, typer.Option("--max-message-bytes", help="Drop larger MQTT messages.")
    ] = 65_536,
    max_gap: Annotated[
        int,
        typer.Option(
            "--max-gap",
            help="Quarantine a bar whose sequence number skips more than this many bars.",
        ),
    ] = 1_000,
    max_jump: Annotated[
        float,
        typer.Option(
            "--max-jump",
            help="Quarantine a bar with a price over (1 + this) times, or under 1 / (1 + this) "
            "times, the last accepted close.",
        ),
    ] = 4.0,
    on_gap: Annotated[
        GapChoice,
        typer.Option("--on-gap", help="Bars never received: halt the run, or trade on."),
    ] = "halt",
    on_implausible: Annotated[
        ImplausibleChoice,
        typer.Option("--on-implausible", help="An implausible bar: drop it, or halt the run."),
    ] = "drop",
    db: DbOption = None,
    quiet: LogQuietOption = False,
    *,
    connection: MqttConnection,
) -> None:
    """Paper-trade a scenario on live bars from MQTT, storing every bar as it is processed.

    Runs until the feed ends (an end marker, as `emarl publish` sends), --max-bars, or
    Ctrl-C / SIGTERM (the current bar is finished first). Starting the same run again
    resumes it from the database with the next bar.

    Example: emarl paper scenarios/weichai_sma.toml --bus mqtt://127.0.0.1:1883
    """
    # the paper run loads numba, pandas, numpy and SQLAlchemy: only when it runs
    from engine.app.paper import PaperOptions, run_paper
    from engine.app.scenario import load_scenario

    _log_to_stderr(quiet)
    try:
        config = load_scenario(scenario)
        settings = connection.settings()
        options = PaperOptions(
            run_name=run or config.run.name,
            feed=feed,
            stale_after_bars=stale_after,
            max_bars=max_bars,
            max_message_bytes=max_message_bytes,
            new=new,
            max_gap=max_gap,
            max_jump=max_jump,
            on_gap=on_gap,
            on_implausible=on_implausible,
            feed_key=connection.key(),
        )
        result = run_paper(
            config, settings, options, db_url=db or config.storage.url, scenario_path=str(scenario)
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"paper run {result.run_id}: {result.outcome}; {result.bars:,} new bars "
        f"({result.replayed:,} re-driven on start, {result.dropped:,} messages dropped, "
        f"{result.quarantined:,} bars quarantined)"
    )
    if result.outcome == "halted":
        raise _fail(HandlerError(f"paper run {result.run_id} halted: {result.halt_reason}"))


@option_groups
def publish(
    file: Annotated[
        Path,
        typer.Argument(help="Bars to replay: a CSV or Parquet file, or a scenario TOML file."),
    ],
    symbol: Annotated[
        str | None, typer.Option(help="Symbol of the bars (default: the scenario's).")
    ] = None,
    speed: Annotated[
        str, typer.Option(help="realtime, max, or a factor such as 60x (bar times / factor).")
    ] = "max",
    feed: Annotated[str, typer.Option(help="Publish on emarl/<feed>/bar/<symbol>.")] = "market",
    bars: Annotated[int | None, typer.Option(help="Only the first N bars.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of naive timestamps in a data file.")
    ] = None,
    bar_minutes: Annotated[int | None, typer.Option(help="Bar length of a data file.")] = None,
    end: Annotated[
        bool, typer.Option("--end/--no-end", help="Send an end-of-feed marker after the bars.")
    ] = True,
    max_lead: Annotated[
        int,
        typer.Option(
            help="Send no bar more than N numbers past the slowest paper run reading the feed "
            "(below the broker's queue per client; 0: do not wait for readers).",
        ),
    ] = 500,
    quiet: LogQuietOption = False,
    *,
    connection: MqttConnection,
) -> None:
    """Replay a bar file onto MQTT with sequence numbers (QoS 1, the last bar retained).

    Example: emarl publish data/weichai_30m.parquet --symbol 000338.SZ --speed 60x
    """
    # asyncio, msgspec and the bar loader (pandas, numpy) load only when publishing
    import asyncio

    import msgspec

    from engine.app.scenario import InstrumentConfig, load_scenario
    from engine.feeds.bars import load_bars
    from engine.feeds.config import DataConfig
    from engine.feeds.mqtt import check_name
    from engine.feeds.replay import first_bars, parse_speed, publish_bars

    _log_to_stderr(quiet)
    try:
        check_name("feed", feed)
        factor = parse_speed(speed)
        if max_lead < 0:
            raise ConfigError(f"--max-lead must be 0 (do not wait) or more, got {max_lead}")
        settings = connection.settings()
        if file.suffix.lower() == ".toml":
            config = load_scenario(file)
            if len(config.universe) > 1:  # every symbol's bars, on each symbol's topic
                data: Any = _universe_bars(config, symbol, timezone, bar_minutes, bars)
                name = " ".join(config.symbols)
            else:
                data_config = config.data
                name = symbol or config.single("emarl publish").symbol
                data = None
            path = config.data_path()
            seed = config.run.seed
        else:
            if symbol is None:
                raise ConfigError("--symbol is required when FILE is a data file")
            data_config = DataConfig(path=str(file))
            path, name, seed, data = file, symbol, 0, None
        if data is None:
            changes: dict[str, Any] = {}
            if timezone is not None:
                changes["timezone"] = timezone
            if bar_minutes is not None:
                changes["bar_minutes"] = bar_minutes
            if changes:
                data_config = msgspec.structs.replace(data_config, **changes)
            data_config.check()
            InstrumentConfig(symbol=name).check()
            data = load_bars(data_config, name, path=path, seed=seed)
            if bars is not None:
                if bars < 1:
                    raise ConfigError(f"--bars must be at least 1, got {bars}")
                data = first_bars(data, bars)
        key = connection.key()
        report = asyncio.run(
            publish_bars(
                data, settings, feed=feed, speed=factor, end=end, key=key, max_lead=max_lead or None
            )
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"published {report.bars:,} bars of {name} to {settings.describe()} "
        f"(emarl/{feed}/bar/{'<symbol>' if ' ' in name else name}) in {report.seconds:.2f} s"
        + (f", {report.reconnects} reconnects" if report.reconnects else "")
        + (f", {report.waited:.2f} s waiting for readers" if report.waited >= 0.01 else "")
    )


def _universe_bars(
    config: Any, symbol: str | None, timezone: str | None, minutes: int | None, bars: int | None
) -> Any:
    """A universe scenario's bars, merged in time-slice order (``emarl publish``)."""
    from engine.app.backtest import load_data  # loads the bars (pandas): only when publishing

    given = {"--symbol": symbol, "--timezone": timezone, "--bar-minutes": minutes, "--bars": bars}
    refused = [option for option, value in given.items() if value is not None]
    if refused:
        raise ConfigError(
            f"{', '.join(refused)}: a universe's bars are the scenario's (every "
            "[[instruments]] symbol, its data section); set them there"
        )
    return load_data(config)


def status(
    run: Annotated[str, typer.Argument(help="Run id, run name (newest of that name) or 'latest'.")],
    db: DbOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = "table",
    include_incomplete: IncompleteOption = False,
) -> None:
    """A run's position, equity, last bar and its lag, feed gaps and quarantined bars, open
    orders and agent weights.

    Example: emarl status weichai-sma
    """
    # storage loads SQLAlchemy: only when the command runs
    from storage.db import connect
    from storage.paper import run_status

    try:
        info = run_status(
            connect(_db_url(db), create=False), run, include_incomplete=include_incomplete
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    if output == "json":
        typer.echo(json.dumps(info, indent=1, default=str))
        return
    _print_status(info)


def _timed_table(
    rows: list[dict[str, Any]], columns: list[str], title: str, label: str = "time"
) -> None:
    """Print ``rows`` as a table with each row's ``ts_event`` shown as ``label``."""
    for row in rows:
        row[label] = _fmt_time(row["ts_event"])
    _emit(rows, columns, "table", title=title)


def _print_status(info: dict[str, Any]) -> None:
    from rich.table import Table  # rich loads only when a table is printed

    def age(seconds: float | None) -> str:
        if seconds is None:
            return ""
        if abs(seconds) < 120:
            return f"{seconds:.1f} s ago"
        if abs(seconds) < 7200:
            return f"{seconds / 60:.1f} min ago"
        if abs(seconds) < 172_800:
            return f"{seconds / 3600:.1f} h ago"
        return f"{seconds / 86400:.1f} days ago"

    table = Table(
        title=f"run {info['run_id']}: {info['name']} ({info['kind']}, {info['status']})",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    snapshot = info["snapshot"]
    table.add_row("symbol", info["symbol"])
    if info["kind"] != "paper":
        stored = info.get("bars_stored")
        table.add_row(
            "bars stored", f"{'?' if stored is None else f'{stored:,}'} of {info['bars']:,}"
        )
    by_symbol = info.get("symbols") or []
    universe = len(by_symbol) > 1  # positions by symbol, in a table of their own below
    if snapshot is not None:
        if not universe:
            position = f"{snapshot['position']:,.6g} @ avg {snapshot['avg_price']:.6g}"
            table.add_row("position", position)
        table.add_row("cash", f"{snapshot['cash']:,.2f}")
        table.add_row("equity", f"{snapshot['equity']:,.2f}")
        if not universe:
            table.add_row("mark (last close)", f"{snapshot['mark_price']:.6g}")
        table.add_row("fees", f"{snapshot['fees']:,.2f}")
        for key, label in (("borrow_fees", "borrow fees"), ("financing", "financing")):
            if snapshot.get(key):
                table.add_row(label, f"{snapshot[key]:,.2f}")
    feed = info["feed"]
    if feed is not None:
        table.add_row("feed", f"{feed['feed']} (client id {feed['client_id']})")
        table.add_row("bars processed", f"{feed['bars']:,} (last feed seq {feed['last_feed_seq']})")
        if feed["last_bar_ns"] is not None:
            table.add_row(
                "last bar",
                f"{_fmt_time(feed['last_bar_ns'])} UTC, lag {age(feed['bar_lag_seconds'])}",
            )
            table.add_row("last bar received", age(feed["receive_lag_seconds"]))
        if info["status"] != "running":
            state = f"not read (the run is {info['status']})"
        elif feed["stale"]:
            state = f"STALE (no bar for over {feed['stale_after_seconds']:.0f} s)"
        else:
            state = "live"
        table.add_row("feed state", state)
        table.add_row("dropped messages", f"{feed['dropped']:,}")
        if feed["last_drop"]:
            table.add_row("last dropped", feed["last_drop"])
        table.add_row("quarantined bars", f"{feed['quarantined']:,}")
        if feed["last_quarantine"]:
            table.add_row("last quarantined", feed["last_quarantine"])
        skipped = [gap for gap in feed["gaps"] if gap["action"] == "skipped"]
        table.add_row(
            "feed gaps",
            f"{len(skipped):,} ({feed['missing_bars']:,} bars never received)"
            + "".join(f"; seq {gap['first_seq']}..{gap['last_seq']}" for gap in skipped[:5])
            + ("; ..." if len(skipped) > 5 else ""),
        )
        for gap in feed["gaps"]:
            if gap["action"] == "halted":
                table.add_row(
                    "halted at a gap",
                    f"{gap['bars']:,} bars never received (seq {gap['first_seq']}.."
                    f"{gap['last_seq']})",
                )
    elif snapshot is not None:
        table.add_row("last bar", f"{_fmt_time(snapshot['ts_event'])} UTC")
    if info["error"]:
        table.add_row("error", info["error"])
    _console().print(table)
    if universe:
        columns = ["symbol", "position", "avg_price", "mark_price", "realised_pnl"]
        columns += ["unrealised_pnl", "last bar"]
        _timed_table(by_symbol, columns, "positions by symbol", "last bar")
    orders = info["open_orders"]
    if orders:
        columns = ["order_id", "time", "symbol", "side", "order_type", "quantity", "filled"]
        _timed_table(orders, [*columns, "limit_price"], "open orders")
    else:
        _console().print("open orders: none")
    if info["agents"]:
        _emit(
            info["agents"],
            (["symbol"] if universe else [])
            + ["agent_index", "agent_id", "weight", "share_price", "option_value"],
            "table",
            title="agent weights (latest valuation)",
        )
