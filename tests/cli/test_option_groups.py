"""``option_groups``: options several commands share, declared once as a dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.cli.common import option_groups
from engine.core.errors import ConfigError


@dataclass(frozen=True)
class Login:
    user: Annotated[str, typer.Option("--user", envvar="TEST_OPTION_GROUPS_USER")] = "guest"
    port: Annotated[int, typer.Option(help="Port of the service.")] = 1883
    secure: Annotated[bool, typer.Option("--secure")] = False


def make_app(seen: list[dict[str, Any]]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @option_groups
    def connect(
        target: Annotated[str, typer.Argument()],
        retries: Annotated[int, typer.Option()] = 1,
        *,
        login: Login,
    ) -> None:
        """Connect to TARGET."""
        seen.append({"target": target, "retries": retries, "login": login})

    @app.command()
    def other() -> None:  # a second command: typer then names the first one
        pass

    return app


def test_a_group_s_fields_are_options_of_the_command_and_come_back_as_one_instance() -> None:
    seen: list[dict[str, Any]] = []
    app = make_app(seen)
    result = CliRunner().invoke(
        app, ["connect", "host", "--retries", "3", "--user", "ada", "--port", "1", "--secure"]
    )
    assert result.exit_code == 0, result.output
    assert seen == [{"target": "host", "retries": 3, "login": Login("ada", 1, True)}]


def test_a_group_s_defaults_and_environment_variables_hold() -> None:
    seen: list[dict[str, Any]] = []
    app = make_app(seen)
    assert CliRunner().invoke(app, ["connect", "host"]).exit_code == 0
    result = CliRunner().invoke(app, ["connect", "host"], env={"TEST_OPTION_GROUPS_USER": "env"})
    assert result.exit_code == 0, result.output
    assert [s["login"] for s in seen] == [Login(), Login(user="env")]


def test_a_group_s_options_are_in_the_help_and_checked_like_any_other() -> None:
    app = make_app([])
    shown = CliRunner().invoke(app, ["connect", "--help"], env={"COLUMNS": "120"}).output
    for option in ("--retries", "--user", "--port", "--secure", "Port of the service."):
        assert option in shown
    assert "--login" not in shown
    bad = CliRunner().invoke(app, ["connect", "host", "--port", "many"])
    assert bad.exit_code == 2
    assert "--port" in bad.output


def test_paper_without_options_runs_with_the_engine_s_default_paper_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CLI declares its own defaults (it starts without the engine): they must be
    ``PaperOptions``' and ``MqttSettings``' own, or the CLI and the API part ways."""
    import engine.app.paper as paper
    from engine.feeds.mqtt import MqttSettings

    calls: list[tuple[Any, Any]] = []

    def fake_run_paper(config: Any, settings: Any, options: Any, **_: Any) -> Any:
        calls.append((settings, options))
        return paper.PaperResult(
            run_id=1, outcome="end", bars=0, replayed=0, dropped=0, reconnects=0, wall_seconds=0
        )

    monkeypatch.setattr(paper, "run_paper", fake_run_paper)
    monkeypatch.delenv("EMARL_MQTT_URL", raising=False)
    monkeypatch.delenv("EMARL_FEED_KEY", raising=False)
    scenario = tmp_path / "s.toml"
    scenario.write_text('[run]\nname = "p"\n[data]\nsource = "synthetic"\n')
    result = CliRunner().invoke(app, ["paper", str(scenario), "--quiet"])
    assert result.exit_code == 0, result.output
    [(settings, options)] = calls
    assert options == paper.PaperOptions(run_name="p")
    assert settings == MqttSettings.from_url("mqtt://127.0.0.1:1883")


@pytest.mark.parametrize("command", ["sweep", "walkforward"])
def test_sweep_and_walkforward_without_options_run_with_the_default_batch(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import engine.app.sweep as sweep
    import engine.app.walkforward as walkforward

    batches: list[Any] = []

    def fake(*_: Any, batch: Any, **__: Any) -> Any:
        batches.append(batch)
        raise ConfigError("stop here")

    monkeypatch.setattr(sweep, "run_sweep", fake)
    monkeypatch.setattr(walkforward, "run_walk_forward", fake)
    monkeypatch.delenv("EMARL_DB", raising=False)
    scenario = tmp_path / "s.toml"
    scenario.write_text('[run]\nname = "p"\n[data]\nsource = "synthetic"\n')
    result = CliRunner().invoke(app, [command, str(scenario), "--quiet"])
    assert result.exit_code != 0 and "stop here" in result.output
    [batch] = batches
    assert batch == sweep.Batch(scenario_path=str(scenario))


@pytest.mark.parametrize(("given", "expected"), [([], "default"), (["--max-lead", "0"], None)])
def test_publish_waits_for_readers_by_the_engine_s_default_lead(
    given: list[str], expected: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``emarl publish`` hands ``publish_bars`` the engine's own ``MAX_LEAD`` unless told
    otherwise; ``--max-lead 0`` does not wait for readers."""
    import engine.feeds.replay as replay
    from engine.feeds.readers import MAX_LEAD

    leads: list[Any] = []

    async def fake_publish(*_: Any, max_lead: Any, **__: Any) -> Any:
        leads.append(max_lead)
        return replay.PublishReport(bars=0, seconds=0.0, reconnects=0)

    monkeypatch.setattr(replay, "publish_bars", fake_publish)
    monkeypatch.delenv("EMARL_MQTT_URL", raising=False)
    scenario = tmp_path / "s.toml"
    scenario.write_text('[run]\nname = "p"\n[data]\nsource = "synthetic"\n')
    result = CliRunner().invoke(app, ["publish", str(scenario), "--bars", "5", *given])
    assert result.exit_code == 0, result.output
    assert leads == [MAX_LEAD if expected == "default" else expected]
    refused = CliRunner().invoke(app, ["publish", str(scenario), "--max-lead", "-1"])
    assert refused.exit_code != 0 and "--max-lead must be 0" in refused.output
