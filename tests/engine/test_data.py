"""Loading, validating, repairing and resampling bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.core.errors import DataError
from engine.feeds.bars import count_gaps, load_bars, resample_bars
from engine.feeds.config import DataConfig
from tests.conftest import FIXTURES

DATA = FIXTURES / "data"


def load(name: str, **options: object):
    config = DataConfig(path=str(DATA / name), **options)  # type: ignore[arg-type]
    return load_bars(config, "X", path=DATA / name)


def test_load_bars_good_csv_stamps_bar_ends_in_utc_ns() -> None:
    bars = load("good.csv", timezone="Asia/Shanghai")
    assert len(bars) == 3
    # 10:00 in Shanghai is 02:00 UTC.
    assert pd.Timestamp(int(bars.ts[0]), tz="UTC") == pd.Timestamp("2024-01-02 02:00", tz="UTC")
    np.testing.assert_array_equal(bars.close, [10.5, 10.8, 11.0])
    assert bars.report.gaps == 0


def test_load_bars_start_label_moves_stamp_to_bar_end() -> None:
    bars = load("good.csv", timestamp_label="start")
    assert pd.Timestamp(int(bars.ts[0]), tz="UTC") == pd.Timestamp("2024-01-02 10:30", tz="UTC")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", r"empty\.csv: file is empty"),
        ("header_only.csv", r"header_only\.csv: file has a header but no rows"),
        ("missing_column.csv", r"missing column\(s\) 'close'; the file has 'timestamp'"),
        ("unparsable_number.csv", r"row 3: cannot parse 'abc' as a number in column 'close'"),
        ("nan_price.csv", r"row 3: close is NaN .*on_bad_price"),
        ("infinite_price.csv", r"row 3: high is infinite"),
        ("negative_volume.csv", r"row 3: volume is -5\.0, it must be a finite number >= 0"),
        ("high_below.csv", r"row 3: high 10\.6 is below max\(open, close\) = 10\.8"),
        ("low_above.csv", r"row 3: low 10\.6 is above min\(open, close\) = 10\.5"),
        (
            "duplicate.csv",
            r"row 3: duplicate timestamp 2024-01-02 10:00:00\+00:00 \(also on row 2\)",
        ),
        ("out_of_order.csv", r"row 4: timestamp .*10:30:00\+00:00 is earlier than the previous"),
        ("off_grid.csv", r"row 4: timestamp .*10:47:00\+00:00 is not on the 30-minute grid"),
        ("bad_timestamp.csv", r"row 3: cannot parse timestamp 'not-a-date'"),
    ],
)
def test_load_bars_bad_file_names_file_row_and_problem(name: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load(name)
    assert name in str(info.value)


def test_load_bars_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file does not exist"):
        load_bars(DataConfig(path="x.csv"), "X", path=tmp_path / "x.csv")


def test_load_bars_drop_policies_remove_bad_rows() -> None:
    assert len(load("nan_price.csv", on_bad_price="drop")) == 2
    assert len(load("negative_volume.csv", on_bad_volume="drop")) == 1
    assert len(load("high_below.csv", on_bad_range="drop")) == 1
    assert len(load("duplicate.csv", on_duplicate="drop")) == 2
    assert len(load("out_of_order.csv", on_out_of_order="drop")) == 2
    assert len(load("off_grid.csv", on_off_grid="drop")) == 3
    dropped = load("nan_price.csv", on_bad_price="drop").report.dropped
    assert dropped == {"bad price": 1}


def test_load_bars_fill_policies_repair_rows() -> None:
    bars = load("nan_price.csv", on_bad_price="fill")
    # A flat bar at the previous close, volume 0.
    assert [bars.open[1], bars.high[1], bars.low[1], bars.close[1], bars.volume[1]] == [
        10.5,
        10.5,
        10.5,
        10.5,
        0.0,
    ]
    assert load("negative_volume.csv", on_bad_volume="fill").volume[1] == 0.0
    widened = load("high_below.csv", on_bad_range="fill")
    assert widened.high[1] == 10.8
    sorted_bars = load("out_of_order.csv", on_out_of_order="sort")
    assert np.all(np.diff(sorted_bars.ts) > 0)
    merged = load("off_grid.csv", on_off_grid="fill")
    # The 10:47 bar merges into the 11:00 bar: open from 10:47, volumes added.
    assert len(merged) == 3
    assert merged.volume[2] == 180.0
    assert merged.open[2] == 10.8


def test_resample_bars_matches_pandas_right_closed_right_labelled() -> None:
    rng = np.random.default_rng(3)
    n = 600
    index = pd.date_range("2024-01-02 09:35", periods=n, freq="5min", tz="UTC")
    keep = np.sort(rng.choice(n, size=450, replace=False))  # with holes
    index = index[keep]
    close = 100 + np.cumsum(rng.standard_normal(len(index)))
    frame = pd.DataFrame(
        {
            "open": close + rng.standard_normal(len(index)) * 0.1,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": rng.integers(0, 100, len(index)).astype(float),
        },
        index=index,
    )
    expected = (
        frame.resample("30min", closed="right", label="right")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna()
    )
    ts, cols = resample_bars(
        index.as_unit("ns").asi8, {k: frame[k].to_numpy() for k in frame}, 30, "UTC"
    )
    np.testing.assert_array_equal(ts, expected.index.as_unit("ns").asi8)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(cols[name], expected[name].to_numpy(), rtol=0, atol=0)


def test_load_bars_weichai_resampled_has_8_bars_per_day(weichai_path: Path) -> None:
    config = DataConfig(path=str(weichai_path), timezone="Asia/Shanghai")
    bars = load_bars(config, "000338.SZ", path=weichai_path)
    assert len(bars) == 25_072
    local = pd.to_datetime(bars.ts, utc=True).tz_convert("Asia/Shanghai")
    per_day = pd.Series(local.date).value_counts()
    assert per_day.nunique() == 1 and per_day.iloc[0] == 8
    assert len(per_day) == 3_134
    assert int((bars.volume == 0).sum()) == 21
    assert bars.report.gaps == 0


def test_count_gaps_missing_bar_inside_session_counts_one() -> None:
    day = pd.date_range("2024-01-02 10:00", periods=8, freq="30min", tz="UTC")
    days = day.append([day + pd.Timedelta(days=k) for k in (1, 2, 3)])
    ts = days.as_unit("ns").asi8
    assert count_gaps(ts, "UTC") == 0
    holes = np.delete(ts, [3, 12])  # one inside day 0, one inside day 1
    assert count_gaps(holes, "UTC") == 2
    # A missing whole day is a break, not a gap; a short day's tail is not counted.
    assert count_gaps(np.concatenate([ts[:8], ts[16:]]), "UTC") == 0


def test_load_bars_window_outside_data_errors() -> None:
    config = DataConfig(path=str(DATA / "good.csv"), start="2030-01-01")
    with pytest.raises(DataError, match="no bars between"):
        load_bars(config, "X", path=DATA / "good.csv")


def test_load_bars_synthetic_same_seed_same_bars() -> None:
    config = DataConfig(source="synthetic")
    a = load_bars(config, "S", seed=5)
    b = load_bars(config, "S", seed=5)
    c = load_bars(config, "S", seed=6)
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.array_equal(a.close, c.close)
    assert a.regime is not None and set(np.unique(a.regime)) <= {0, 1, 2, 3}
    assert np.all(a.high >= np.maximum(a.open, a.close))
    assert np.all(a.low <= np.minimum(a.open, a.close))


@pytest.mark.parametrize("name", ["bars.parquet", "bars"])
def test_load_bars_from_a_folder_says_it_is_a_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(DataError, match=rf"{name}: is a folder, not a data file") as info:
        load_bars(DataConfig(path=str(folder)), "X", path=folder)
    assert "header but no rows" not in str(info.value)


def _bar_frame() -> pd.DataFrame:
    """120 half-hour bars across a weekend, with awkward prices."""
    rng = np.random.default_rng(8)
    times = pd.date_range("2021-01-08 14:00", periods=120, freq="30min", tz="UTC")
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
    return pd.DataFrame(
        {
            "timestamp": times,
            "open": close * 1.001,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(0, 10_000, len(times)).astype(float),
        }
    )


def _columns(bars) -> list[np.ndarray]:
    return [bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume]


def _load_file(path: Path, **options: object):
    return load_bars(DataConfig(path=str(path), **options), "X", path=path)  # type: ignore[arg-type]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_unix_timestamps_load_as_the_same_bars_as_iso_text(
    tmp_path: Path, unit: str, kind: str
) -> None:
    """Whole-number timestamps are Unix times in the one unit whose range holds them,
    read as UTC whatever data.timezone says; the bars equal those of the same file with
    ISO timestamps (pandas writes those), and the run says how they were read."""
    frame = _bar_frame()
    frame.to_csv(tmp_path / "iso.csv", index=False)
    reference = _load_file(tmp_path / "iso.csv")
    since = frame["timestamp"] - pd.Timestamp(0, tz="UTC")
    epoch = frame.assign(timestamp=since // pd.Timedelta(1, unit))
    path = tmp_path / f"epoch.{kind}"
    if kind == "csv":
        epoch.to_csv(path, index=False)
    else:
        epoch.to_parquet(path)
    bars = _load_file(path, timezone="Asia/Shanghai")  # a zone naive text would need
    for got, expected in zip(_columns(bars), _columns(reference), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert bars.report.changes() == {"epoch_unit": unit}
    assert reference.report.changes() is None


def test_whole_numbers_in_no_one_unit_are_refused_with_their_range(tmp_path: Path) -> None:
    frame = _bar_frame()
    seconds = (frame["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s")
    frame["timestamp"] = np.where(np.arange(len(frame)) < 60, seconds, seconds * 1000)
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(DataError) as raised:
        _load_file(tmp_path / "mixed.csv")
    assert str(raised.value).endswith(
        f"row 62: timestamp {seconds[60] * 1000} is not a Unix time in s, the unit of the "
        f"first row's {seconds[0]}; write timestamps in one unit"
    )
    frame["timestamp"] = seconds
    frame.loc[30, "timestamp"] = 9_300_000_000  # seconds in 2264: past what ns can hold
    frame.to_csv(tmp_path / "far.csv", index=False)
    with pytest.raises(DataError, match=r"row 32: timestamp 9300000000 is not a Unix time in s"):
        _load_file(tmp_path / "far.csv")
    frame["timestamp"] = 12_345  # a whole number, but no date after 1973 in any unit
    frame.to_csv(tmp_path / "small.csv", index=False)
    with pytest.raises(DataError, match=r"row 2: timestamp 12345 is a whole number, but no"):
        _load_file(tmp_path / "small.csv")


def test_dates_written_as_whole_numbers_stay_dates(tmp_path: Path) -> None:
    """20210108 and 202101081400 read as dates (pandas reads them so), never as Unix times."""
    frame = _bar_frame()
    frame.to_csv(tmp_path / "iso.csv", index=False)
    reference = _load_file(tmp_path / "iso.csv")
    compact = frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y%m%d%H%M"))
    compact.to_csv(tmp_path / "compact.csv", index=False)
    bars = _load_file(tmp_path / "compact.csv")
    np.testing.assert_array_equal(bars.ts, reference.ts)
    assert bars.report.changes() is None


@pytest.mark.parametrize(
    ("separator", "bom"), [(";", False), ("\t", False), ("|", False), (",", True)]
)
def test_csv_separators_and_a_byte_order_mark_load_as_the_same_bars(
    tmp_path: Path, separator: str, bom: bool
) -> None:
    """A header without a comma but with ``;``, a tab or ``|`` names the separator, and a
    UTF-8 byte-order mark is not part of the first column's name (a spreadsheet's export)."""
    frame = _bar_frame()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    reference = _load_file(tmp_path / "plain.csv")
    path = tmp_path / "exported.csv"
    frame.to_csv(path, index=False, sep=separator, encoding="utf-8-sig" if bom else "utf-8")
    for got, expected in zip(_columns(_load_file(path)), _columns(reference), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_naive_times_through_the_end_of_summer_time_load_in_the_order_given(
    tmp_path: Path,
) -> None:
    """Half-hour bars through the night New York's clocks go back, written as naive local
    times (01:00 and 01:30 come twice): the rows' order tells the two passes apart, and
    the bars' UTC times are those pandas converted from."""
    utc = pd.date_range("2021-11-06 22:00", periods=24, freq="30min", tz="UTC")
    local = utc.tz_convert("America/New_York").tz_localize(None)
    assert local.duplicated().sum() == 2  # 01:00 and 01:30 twice
    frame = _bar_frame().iloc[: len(utc)].assign(timestamp=local)
    frame.to_csv(tmp_path / "local.csv", index=False)
    bars = _load_file(tmp_path / "local.csv", timezone="America/New_York")
    np.testing.assert_array_equal(bars.ts, utc.as_unit("ns").asi8)


@pytest.mark.parametrize(
    ("first", "said"),
    [
        ("2021-03-14 00:00", "row 6: 2021-03-14 02:00:00 does not exist in America/New_York"),
        ("2021-11-06 23:00", "row 6: 2021-11-07 01:00:00 occurs twice in America/New_York"),
    ],
)
def test_a_local_time_skipped_or_not_passed_twice_is_an_error_naming_its_row(
    tmp_path: Path, first: str, said: str
) -> None:
    """Naive times on an even half-hour grid (as a careless export writes them) cross the
    hour the clocks skip, or pass the repeated hour once: the error names the row."""
    times = pd.date_range(first, periods=12, freq="30min")
    frame = _bar_frame().iloc[:12].assign(timestamp=times)
    frame.to_csv(tmp_path / "grid.csv", index=False)
    with pytest.raises(DataError) as raised:
        _load_file(tmp_path / "grid.csv", timezone="America/New_York")
    assert said in str(raised.value)
    assert str(raised.value).endswith("give timestamps with their UTC offset, or in UTC")


def test_offsets_that_change_with_summer_time_are_each_one_instant(tmp_path: Path) -> None:
    """Berlin's local times written with their offsets (+01:00, then +02:00 from the night
    the clocks go forward) load as the UTC times pandas converted from; they raised
    pandas' "Mixed timezones detected" as a traceback. A row without an offset among rows
    with one is an error naming it."""
    utc = pd.date_range("2021-03-27 20:00", periods=24, freq="30min", tz="UTC")
    written = [t.isoformat() for t in utc.tz_convert("Europe/Berlin")]
    assert {w[-6:] for w in written} == {"+01:00", "+02:00"}
    frame = _bar_frame().iloc[: len(utc)].assign(timestamp=written)
    frame.to_csv(tmp_path / "offsets.csv", index=False)
    bars = _load_file(tmp_path / "offsets.csv", timezone="America/New_York")  # not used
    np.testing.assert_array_equal(bars.ts, utc.as_unit("ns").asi8)
    frame.loc[5, "timestamp"] = written[5][:-6]  # its offset left out
    frame.to_csv(tmp_path / "one_naive.csv", index=False)
    with pytest.raises(DataError) as raised:
        _load_file(tmp_path / "one_naive.csv")
    assert str(raised.value).endswith(
        f"row 7: timestamp {written[5][:-6]!r} has no UTC offset, while other rows have one; "
        "give every row its offset, or none"
    )
