"""Errors of the env manager: each says what, why and what to do, and carries its own exit code."""

from __future__ import annotations

from registry.errors import ExitCode, StemSepError


class ConfigError(StemSepError):
    """The machine configuration (config.toml, STEMSEP_* variable, CLI flag) has a bad key or value."""

    exit_code = ExitCode.INVALID
    code = "E_CONFIG"


class UnknownConfigKeyError(StemSepError):
    """`stemsep env config set/unset` names a key the machine configuration does not have: what the user typed."""

    exit_code = ExitCode.USAGE
    code = "E_CONFIG_UNKNOWN_KEY"


class UnresolvableError(StemSepError):
    """The requirement set of an env cannot be satisfied (conflicting pins)."""

    exit_code = ExitCode.UNRESOLVABLE
    code = "E_UNRESOLVABLE"

    def __init__(self, message: str, *, packages: list[str] | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.packages = packages or []


class EnvBuildError(StemSepError):
    """An env could not be built: index unreachable, install failed, health check failed."""

    exit_code = ExitCode.ENV_BUILD
    code = "E_ENV_BUILD"


class EnvDamagedError(StemSepError):
    """An env's installed files are not what its packages' RECORDs say (`env verify`), or a repair left them so."""

    exit_code = ExitCode.ENV_BUILD
    code = "E_ENV_DAMAGED"


class NoInterpreterError(StemSepError):
    """No Python interpreter satisfies the requested range."""

    exit_code = ExitCode.NO_INTERPRETER
    code = "E_NO_INTERPRETER"


class StoreError(StemSepError):
    """The state dir (env store, caches) cannot be written: read-only, full, not a directory."""

    exit_code = ExitCode.STORE
    code = "E_STORE"


class UnknownEnvError(StemSepError):
    """An env id given on the command line does not exist in the store."""

    exit_code = ExitCode.USAGE
    code = "E_UNKNOWN_ENV"


class UsageError(StemSepError):
    """Bad arguments or options that typer's own parsing lets through (its usage errors exit 2 as well)."""

    exit_code = ExitCode.USAGE
    code = "E_USAGE"


class Cancelled(StemSepError):
    """Ctrl-C (SIGINT) stopped the command: every command ends with this one error and exit 130. SIGTERM and
    SIGHUP stop it the same way, with the subclasses below (envmgr/stop_signals.py picks one)."""

    exit_code = ExitCode.CANCELLED
    code = "E_CANCELLED"


class Terminated(Cancelled):
    """SIGTERM stopped the command (128 + 15, as shells report a process it killed)."""

    exit_code = ExitCode.TERMINATED
    code = "E_TERMINATED"


class HungUp(Cancelled):
    """The terminal hung up (SIGHUP; 128 + 1)."""

    exit_code = ExitCode.HANGUP
    code = "E_HANGUP"


class InternalError(StemSepError):
    """A bug: an exception nobody anticipated (envmgr/cli/outcome.py logs its traceback and names the file)."""

    exit_code = ExitCode.INTERNAL
    code = "E_INTERNAL"
