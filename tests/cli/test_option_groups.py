"""``option_groups``: options several commands share, declared once as a dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.testing import CliRunner

from engine.app.cli.common import option_groups


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
