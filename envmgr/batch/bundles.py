"""A batch's debug bundles (docs/debugging.md): the same bundle `stemsep separate` writes, one per failed input, or
one for a group that failed before its inputs ran (preflight, lock, env, worker start), which each of its inputs'
errors names.

They go under the output dir (`<output dir>/.stemsep-batch/bundles/`), beside the ledger, not under a node's
log_dir: with `--engine ray` the runner that knows the failure (its worker's transcript and stderr, its env) is on
a node, and the output dir is the one path every node writes and the driver reads. With `--collect` (nodes share
no path) the runner writes it into a private dir and returns its bytes with the input's result; the driver puts
it in the same folder. Either way an error's `debug_bundle` is a path on the driver's machine.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.batch.ledger import FOLDER

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.jobs.job_record import JobRecord
    from registry.errors import StemSepError

BUNDLES = "bundles"


def bundle_dir(output_dir: Path) -> Path:
    return output_dir / FOLDER / BUNDLES


def write_batch_bundle(record: JobRecord, error: StemSepError, config: MachineConfig | None,
                       folder: Path) -> Path | None:
    """The bundle of a failed run, or None when the error needs none (a usage error, a stop) or it could not be
    written (a warning on stderr says why: a bundle never replaces the input's own error)."""
    from envmgr.diagnostics.bundle import wants_bundle, write_bundle

    if config is None or not wants_bundle(error):
        return None
    try:
        return write_bundle(record, error, config=config, folder=folder, traceback=_trace(error))
    except Exception as exc:
        sys.stderr.write(f"warning: could not write the debug bundle: {type(exc).__name__}: {exc}\n")
        return None


def named(result: dict[str, Any], bundle: Path | None, collect: bool) -> dict[str, Any]:
    """An input's error result naming `bundle` (when one was written); with `collect` its bytes come along
    (`bundle_bytes`): its path is on the runner's node, which may share no folder with the driver."""
    if bundle is not None:
        result["error"]["debug_bundle"] = str(bundle)
        if collect:
            result["bundle_bytes"] = bundle.read_bytes()
    return result


def collected(error: dict[str, Any], data: bytes | None, output_dir: Path, keep: int) -> None:
    """With --collect: put a bundle the runner returned as bytes (`data`; None when an earlier input's result
    brought it) into the batch's bundle dir, prune that, and point the error's `debug_bundle` there (the runner's
    own path is on its node)."""
    from envmgr.diagnostics.bundle import prune_bundles
    from envmgr.fsutil import atomic_write_bytes

    name = error.get("debug_bundle")
    if not name:
        return
    target = bundle_dir(output_dir) / Path(name).name
    if data is not None:
        atomic_write_bytes(target, data)  # private (0600), as the runner's own bundle
        prune_bundles(target.parent, keep, spare=target)
    error["debug_bundle"] = str(target)


def _trace(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
