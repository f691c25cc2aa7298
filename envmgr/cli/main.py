"""The `stemsep` command: assembles the command groups; envmgr/cli/outcome.py turns how a command ended into
its exit code.

Each command group lives in its own module and imports heavy things inside its functions only, so
`stemsep models list` starts fast (the host never imports torch or numpy for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from envmgr import stop_signals
from envmgr.cli import (artifacts_cmd, config_cmd, debug_cmd, doctor_cmd, env_cmd, env_run_cmd, models_cmd,
                        preflight_cmd, registry_cmd, separate_cmd, trust_cmd)
from envmgr.cli import serve_cmd
from envmgr.cli import recipes_cmd, run_cmd
from envmgr.cli import adopted_cmd
from envmgr.cli import batch_cmd
from envmgr.cli.outcome import error_handler

if TYPE_CHECKING:
    from typer._click.core import Context


class _Stemsep(TyperGroup):
    """The root group. Its commands run inside error_handler here, not only in run(): typer turns Ctrl-C
    inside a command into a silent exit 130 before run() could see it."""

    def invoke(self, ctx: Context) -> Any:
        with error_handler():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Stemsep,
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
app.add_typer(recipes_cmd.app, name="recipes")
app.add_typer(env_cmd.app, name="env")
config_cmd.register(env_cmd.app)  # `stemsep env config [show|set|unset]`
env_run_cmd.register(env_cmd.app)  # `stemsep env run|shell`
adopted_cmd.register(env_cmd.app)  # `stemsep env adopt|forget`
env_cmd.register_top_level(app)  # `stemsep setup`
separate_cmd.register(app)  # `stemsep separate`
run_cmd.register(app)  # `stemsep run RECIPE`, `stemsep cache prune`
preflight_cmd.register(app)  # `stemsep preflight`
doctor_cmd.register(app)  # `stemsep doctor`
serve_cmd.register(app)  # `stemsep serve` (docs/serve.md)
debug_cmd.register(app)  # `stemsep debug show|replay`
batch_cmd.register(app)  # `stemsep batch MANIFEST` (docs/scale.md)


def run() -> None:
    stop_signals.install()  # Ctrl-C, SIGTERM and SIGHUP cancel, even where `cmd &` started us with SIGINT ignored
    with error_handler():
        app()


if __name__ == "__main__":
    run()
