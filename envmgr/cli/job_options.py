"""The ten options `stemsep preflight` and `stemsep separate` share (enforcement, confirmations, unpickling
consent, hashes, downloads, setting overrides), declared once.

A command takes them as one parameter, `options: JobOptions = SHARED`, and is decorated with
`@with_job_options`: typer sees the ten options where that parameter stands (so each command's help lists
them in its own place), and the command receives the one JobOptions (envmgr/preflight/options.py) built
from them by `job_options`.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions

Command = TypeVar("Command", bound=Callable[..., Any])

SHARED: Any = object()  # the default that marks a command's `options` parameter


def overlap_number(text: str) -> int | float:
    """`--overlap` as written: `4` is the int 4, `4.0` stays a float, so that settings resolution can say it
    read a divisor 4.0 as 4 (registry.settings), and a ratio or seconds keeps its fraction."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{text} is not a number >= 0")
    return value


# name -> (type, typer option), in the order the help lists them
_OPTIONS: dict[str, tuple[Any, Any]] = {
    "enforcement": (Optional[str], typer.Option(
        None, "--enforcement", help="strict (block on any error; the default), soft (block unless --dev-override) "
        "or report (never block). Default: the config's `enforcement`.", show_default=False)),
    "dev_override": (bool, typer.Option(
        False, "--dev-override", help="With --enforcement soft: proceed despite policy errors, with a loud warning "
        "in the output.")),
    "confirm_manual_steps": (bool, typer.Option(
        False, "--confirm-manual-steps", help="You did the model's manual steps; remembered for this model.")),
    "allow_unsafe_pickle": (bool, typer.Option(
        False, "--allow-unsafe-pickle", help="Load the model's checkpoints that the registry marks unsafe_pickle by "
        "full unpickling, which runs any code the file carries: only for files whose source you trust. Remembered "
        "for the file's content; `stemsep models trust MODEL FILE --revoke` takes it back.")),
    "require_hashes": (bool, typer.Option(
        False, "--require-hashes", help="Refuse artifacts without a sha256 in the registry.")),
    "no_download": (bool, typer.Option(
        False, "--no-download", help="Never download: artifacts must be in the model store.")),
    "overlap": (Optional[float], typer.Option(  # int or float as written: see overlap_number
        None, "--overlap", parser=overlap_number, metavar="NUMBER",
        help="Overlap in the runtime's native meaning (divisor, ratio or seconds; "
        "`stemsep models show` says which). Default: the registry's recommendation.", show_default=False)),
    "segment_size": (Optional[int], typer.Option(
        None, "--segment-size", min=1, help="Segment/chunk size in the runtime's native unit. Default: the "
        "registry's recommendation.", show_default=False)),
    "batch_size": (Optional[int], typer.Option(
        None, "--batch-size", min=1, help="Chunks per batch. Default: the registry's recommendation.",
        show_default=False)),
    "env": (Optional[str], typer.Option(
        None, "--env", metavar="NAME", help="Run in the adopted env NAME (`stemsep env adopt`) instead of a managed "
        "env. Default: the config's adopted_envs entry for the runtime, else the managed env.", show_default=False)),
}


def job_options(*, enforcement: Optional[str], dev_override: bool, confirm_manual_steps: bool,
                allow_unsafe_pickle: bool, require_hashes: bool, no_download: bool, overlap: Optional[float],
                segment_size: Optional[int], batch_size: Optional[int], env: Optional[str] = None) -> JobOptions:
    """The job options the user gave on the command line."""
    from envmgr.preflight.options import JobOptions

    return JobOptions(enforcement=enforcement, dev_override=dev_override, confirm_manual_steps=confirm_manual_steps,
                      allow_unsafe_pickle=allow_unsafe_pickle, require_hashes=require_hashes,
                      download=not no_download, settings=user_settings(overlap, segment_size, batch_size), env=env)


def user_settings(overlap: Optional[float], segment_size: Optional[int], batch_size: Optional[int]) -> dict[str, Any]:
    """The settings the user gave explicitly (they override the registry's recommendations)."""
    given = {"overlap": overlap, "segment_size": segment_size, "batch_size": batch_size}
    return {k: v for k, v in given.items() if v is not None}


def with_job_options(command: Command) -> Command:
    """`command` as typer should see it: its `options = SHARED` parameter replaced by the ten options."""
    signature = inspect.signature(command)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.default is SHARED:
            params += [inspect.Parameter(name, param.kind, default=option, annotation=kind)
                       for name, (kind, option) in _OPTIONS.items()]
        else:
            params.append(param)
    (marked,) = [p.name for p in signature.parameters.values() if p.default is SHARED]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _OPTIONS}
        return command(*args, **{marked: job_options(**given)}, **kwargs)

    # typer reads the parameters from the signature and resolves their types with get_type_hints, which
    # evaluates the command's own (string) annotations in the command's module
    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != marked},
                           **{name: kind for name, (kind, _) in _OPTIONS.items()}}
    return run  # type: ignore[return-value]
