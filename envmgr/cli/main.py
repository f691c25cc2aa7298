"""The `stemsep` command: assembles the command groups and turns StemSepError into exit codes.

Each command group lives in its own module and imports heavy things inside its functions only, so
`stemsep models list` starts fast (the host never imports torch or numpy for it).
"""

from __future__ import annotations

import sys

import typer

from envmgr.cli import artifacts_cmd, env_cmd, models_cmd, preflight_cmd, registry_cmd, separate_cmd, trust_cmd
from envmgr.cli.outcome import report_error
from registry.errors import StemSepError

app = typer.Typer(
    name="stemsep",
    help="Run music-source-separation models, each in the environment it needs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_cmd.app, name="models")
artifacts_cmd.register(models_cmd.app)  # `stemsep models download|import|status|rm`
trust_cmd.register(models_cmd.app)  # `stemsep models trust`
app.add_typer(registry_cmd.app, name="registry")
app.add_typer(env_cmd.app, name="env")
env_cmd.register_top_level(app)  # `stemsep setup`
separate_cmd.register(app)  # `stemsep separate`
preflight_cmd.register(app)  # `stemsep preflight`


def run() -> None:
    try:
        app()
    except StemSepError as err:
        report_error(err)
        sys.exit(int(err.exit_code))


if __name__ == "__main__":
    run()
