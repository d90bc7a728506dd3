"""Paper trading through a broker that wants a password, and through TLS.

Each test starts its own ``mosquitto`` (user names and passwords, or a TLS
listener with a throw-away certificate authority made with ``openssl``),
replays a few hundred bars of the SMA scenario through ``emarl publish`` into
``emarl paper`` and compares the fills with a backtest's; then checks that a
client with the wrong credentials fails at once with a one-line error.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from engine.core.errors import BusError, ConfigError
from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
from tests.conftest import service_unavailable
from tests.paper.broker import OPENSSL, Certificates, Mosquitto, make_certificates
from tests.paper.conftest import demo_subset
from tests.paper.test_mqtt import (
    FILLS,
    ROOT,
    SNAPSHOTS,
    backtest_ledger,
    emarl,
    finish,
    paper_run_id,
    rows,
    wait_for,
)

pytestmark = pytest.mark.service

USER = "trader"
PASSWORD = "p@ss:w/rd 1"  # characters a URL must quote
BARS = 300


def start_broker(
    folder: Path, *, users: dict[str, str] | None = None, tls: Certificates | None = None
) -> Mosquitto:
    if not Mosquitto.available():
        service_unavailable("the mosquitto binary is not installed")
    broker = Mosquitto(folder, persistence=True, users=users, tls=tls)
    broker.start()
    return broker


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = start_broker(tmp_path / "mosquitto", users={USER: PASSWORD, "other": "x"})
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    if not Path(OPENSSL).exists():
        service_unavailable("openssl is not installed")
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def tls_broker(tmp_path: Path, certificates: Certificates) -> Iterator[Mosquitto]:
    broker = start_broker(tmp_path / "mosquitto", tls=certificates)
    try:
        yield broker
    finally:
        broker.stop()


def refused(*commands: tuple[str, ...]) -> list[str]:
    """Run the ``emarl`` commands at once, each expected to fail; their error lines."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "engine.app.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    errors = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError(f"{process.args} still running after 60 s") from None
        assert process.returncode != 0, out + err
        assert "Traceback" not in err, err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
        # refused at once, not after the connection timed out
        assert "timed out" not in lines[0], lines[0]
        errors.append(lines[0])
    return errors


def replay(
    scenario: Path, url: str, folder: Path, name: str, paper_options: tuple[str, ...] = (),
    publish_options: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """``emarl publish --speed max`` into ``emarl paper``; both must end cleanly."""
    log = folder / f"{name}.log"
    paper = emarl("paper", str(scenario), "--bus", url, "--run", name, *paper_options, log=log)
    wait_for(log, "listening on", paper)
    publish_log = folder / f"{name}-publish.log"
    publish = emarl(
        "publish", str(scenario), "--bus", url, "--speed", "max", *publish_options,
        log=publish_log,
    )  # fmt: skip
    finish(publish, publish_log)
    finish(paper, log)
    assert f"feed ended after {BARS} new bars" in log.read_text()


def assert_backtest_fills(scenario: Path, db_url: str, name: str) -> None:
    fills, snapshots = backtest_ledger(scenario, db_url)
    run_id = paper_run_id(db_url, name)
    assert len(fills) > 3
    assert rows(db_url, FILLS, run_id) == fills
    assert rows(db_url, SNAPSHOTS, run_id) == snapshots


def test_password_broker_with_the_password_gives_the_backtest_fills(
    password_broker: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'auth.db'}"
    scenario = demo_subset(weichai_path, tmp_path, BARS, db_url)
    url = password_broker.url_with(quote(USER, safe=""), quote(PASSWORD, safe=""))
    replay(scenario, url, tmp_path, "auth")
    logged = (tmp_path / "auth.log").read_text()
    assert f"at mqtt://{USER}@127.0.0.1:{password_broker.port}" in logged
    assert "w/rd" not in logged and quote(PASSWORD, safe="") not in logged
    assert_backtest_fills(scenario, db_url, "auth")


def connect_error(url: str, **options: str) -> str:
    """Connect in this process as ``emarl`` does; the :class:`BusError` it must raise."""

    async def attempt() -> None:
        settings = MqttSettings.from_url(url, **options)
        client = make_client(settings)
        await connect_client(client, settings)
        await close_client(client)

    with pytest.raises(BusError) as raised:
        asyncio.run(attempt())
    return str(raised.value)


def test_password_broker_with_a_wrong_password_fails_at_once(
    password_broker: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    scenario = demo_subset(weichai_path, tmp_path, 20, f"sqlite:///{tmp_path / 'wrong.db'}")
    wrong = password_broker.url_with(USER, "not-the-password")
    for error in refused(
        ("publish", str(scenario), "--bus", wrong), ("paper", str(scenario), "--bus", wrong)
    ):
        assert "Not authorized" in error and f"refused user {USER!r}" in error, error
    # --password overrides the URL's
    right = password_broker.url_with(USER, quote(PASSWORD, safe=""))
    error = connect_error(right, password="also-wrong")
    assert "Not authorized" in error and f"refused user {USER!r}" in error, error
    error = connect_error(password_broker.url)
    assert "wants a user name and password" in error, error
    # a URL that cannot be read is reported without the password in it
    with pytest.raises(ConfigError, match="the port is not a number") as raised:
        MqttSettings.from_url(password_broker.url_with(USER, PASSWORD))
    assert "w/rd" not in str(raised.value) and f"{USER}:***@" in str(raised.value)


def test_tls_broker_with_its_ca_gives_the_backtest_fills(
    tls_broker: Mosquitto, certificates: Certificates, weichai_path: Path, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'tls.db'}"
    scenario = demo_subset(weichai_path, tmp_path, BARS, db_url)
    assert tls_broker.url.startswith("mqtts://127.0.0.1:")
    # the paper run checks the broker's certificate; the publisher (--tls-insecure) does not
    replay(scenario, tls_broker.url, tmp_path, "tls",
           paper_options=("--ca-file", str(certificates.ca_file)),
           publish_options=("--tls-insecure",))  # fmt: skip
    assert_backtest_fills(scenario, db_url, "tls")


def test_tls_broker_refuses_unchecked_certificates_and_plain_clients(
    tls_broker: Mosquitto, certificates: Certificates, weichai_path: Path, tmp_path: Path
) -> None:
    scenario = demo_subset(weichai_path, tmp_path, 20, f"sqlite:///{tmp_path / 'refused.db'}")
    plain = tls_broker.url.replace("mqtts://", "mqtt://")
    no_ca, plain_paper = refused(
        # the system's CAs do not know the broker's
        ("publish", str(scenario), "--bus", tls_broker.url),
        # a plain client on the TLS port: the broker hangs up before its CONNACK
        ("paper", str(scenario), "--bus", plain),
    )
    assert "certificate verify failed" in no_ca and "--ca-file" in no_ca, no_ca
    for error in (plain_paper, connect_error(plain)):
        assert "closed the connection before accepting it" in error, error
        assert "use mqtts://" in error, error
    # the certificate names 127.0.0.1, not localhost
    by_name = tls_broker.url.replace("127.0.0.1", "localhost")
    error = connect_error(by_name, ca_file=str(certificates.ca_file))
    assert "not issued for 'localhost'" in error, error

    # --ca-file turns TLS on for an mqtt:// URL (as documented)
    async def probe() -> None:
        settings = MqttSettings.from_url(plain, ca_file=str(certificates.ca_file))
        assert settings.tls and settings.describe() == tls_broker.url
        client = make_client(settings)
        await connect_client(client, settings)
        await close_client(client)

    asyncio.run(probe())
