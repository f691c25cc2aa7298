"""Errors every host module raises: what went wrong, why, what to do, and a distinct exit code.

The exit codes are part of the CLI contract (README "Exit codes", docs/errors.md); apps driving `stemsep`
rely on them. HOST_CODES is the one table of the host's and the registry's error codes; the worker's codes
are declared in runtimes/protocol.py and preflight's findings in envmgr/preflight/rules/codes.py.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1  # registry/config content is invalid (validate found errors)
    USAGE = 2  # bad arguments, unknown model id, unreadable file
    PREFLIGHT_BLOCKED = 3  # preflight said no; nothing was started
    UNRESOLVABLE = 4  # requirement set cannot be resolved (conflicting pins)
    ENV_BUILD = 5  # env could not be built (index unreachable, install failed, health check failed)
    NO_INTERPRETER = 6  # no Python satisfies the requested range
    STORE = 7  # state dir not writable, disk full
    ARTIFACT = 8  # download failed, sha256 mismatch, unsafe path
    WORKER = 9  # worker crashed or broke the protocol
    TIMEOUT = 10  # worker silent / job took too long
    JOB = 11  # the worker reported a job error (model load, inference)
    INPUT = 12  # input audio missing or undecodable
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE in sysexits.h); the traceback went to a log file
    HANGUP = 129  # the terminal hung up (128 + SIGHUP): stopped as Ctrl-C stops it
    CANCELLED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
    TERMINATED = 143  # SIGTERM (128 + SIGTERM): stopped as Ctrl-C stops it


class StemSepError(Exception):
    """Base of all user-facing errors. `code` is a stable machine-readable string (e.g. `E_UNKNOWN_MODEL`)."""

    exit_code: ExitCode = ExitCode.INVALID
    code: str = "E_STEMSEP"

    def __init__(self, message: str, *, why: str = "", hint: str = "", code: str | None = None,
                 exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.why = why
        self.hint = hint
        if code is not None:
            self.code = code
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "why": self.why, "hint": self.hint,
                "exit_code": int(self.exit_code)}

    def __str__(self) -> str:
        parts = [self.message]
        if self.why:
            parts.append(f"Why: {self.why}")
        if self.hint:
            parts.append(f"What to do: {self.hint}")
        return "\n".join(parts)


class HostCode(NamedTuple):
    exit_code: ExitCode | None  # None: the error passes on the exit code of what it reports (the summary says which)
    summary: str


# Every code the host (envmgr/) and the registry (registry/) raise, with the exit code it is raised with.
# tests/worker/test_host_error_codes.py reads every `E_...` in their source and checks it against this table
# (or against preflight's findings and the worker's codes, for codes that are theirs), and this table against
# docs/errors.md.
HOST_CODES: dict[str, HostCode] = {
    # usage: what the user typed
    "E_USAGE": HostCode(ExitCode.USAGE, "bad arguments or options (the hint says which values are accepted)"),
    "E_BAD_FILTER": HostCode(ExitCode.USAGE, "a `models list` filter names an unknown field or value"),
    "E_UNKNOWN_MODEL": HostCode(ExitCode.USAGE, "no model has this id (nearest ids suggested)"),
    "E_UNKNOWN_RUNTIME": HostCode(ExitCode.USAGE, "`--runtime` names no canonical runtime"),
    "E_UNKNOWN_ENV": HostCode(ExitCode.USAGE, "no env in the store has this id, or the id prefix matches several"),
    "E_ADOPT_INTERPRETER": HostCode(ExitCode.USAGE, "`env adopt`: the path holds no Python interpreter that runs"),
    "E_OUTPUT": HostCode(ExitCode.USAGE, "an unknown `--format`, or the output dir cannot be created"),
    "E_OUTPUT_COLLISION": HostCode(ExitCode.USAGE, "two inputs would write the same stem files"),
    "E_OUTPUT_UNWRITABLE": HostCode(ExitCode.USAGE, "the output dir (or where it would be created) is not writable: "
                                                    "found before anything is fetched or built"),
    "E_OUTPUT_NAME_TOO_LONG": HostCode(ExitCode.USAGE, "a stem file name or path is longer than the output "
                                                       "filesystem allows"),
    "E_ARTIFACT_NOT_DECLARED": HostCode(ExitCode.USAGE, "`models import` names a file the model does not declare"),
    "E_ARTIFACT_IMPORT_SOURCE": HostCode(ExitCode.USAGE, "`models import` was given a path that is not a regular "
                                                         "file"),
    "E_CODE_TRUST": HostCode(ExitCode.USAGE, "`models trust` names a file that runs no code, or one not in the store"),
    "E_CONFIG_UNKNOWN_KEY": HostCode(ExitCode.USAGE, "`env config set`/`unset` names no config key (the keys are "
                                                     "listed, the nearest suggested)"),
    "E_BUNDLE_UNREADABLE": HostCode(ExitCode.USAGE, "`debug show`/`replay`: the file is not a debug bundle this "
                                                    "stemsep reads (not a zip, damaged, another format)"),
    "E_REPLAY_NO_JOB": HostCode(ExitCode.USAGE, "`debug replay`: the recorded run stopped at preflight, before any "
                                                "job: there is nothing to replay (its command is named)"),
    "E_REPLAY_NO_AUDIO": HostCode(ExitCode.USAGE, "`debug replay`: the bundle holds no audio and the recorded input "
                                                  "is not here (give --audio), or --audio's count is not the job's"),
    # stemsep serve (envmgr/serve/, docs/serve.md)
    "E_JOB_SPEC": HostCode(ExitCode.USAGE, "`stemsep serve`: a job spec is malformed (the field is named); nothing "
                                           "was queued"),
    "E_APP_FIELD_UNSUPPORTED": HostCode(ExitCode.USAGE, "`stemsep serve --stdio`: the app's request sets a field "
                                                        "this server cannot honour (the field is named); nothing "
                                                        "was queued"),
    "E_JOB_KIND_NOT_RUNNABLE": HostCode(ExitCode.USAGE, "`stemsep serve`: the job's kind (recipe) cannot run on this "
                                                        "server yet"),
    "E_QUEUE": HostCode(ExitCode.USAGE, "`stemsep serve`: a queue operation the job's state does not allow"),
    "E_QUEUE_BUSY": HostCode(ExitCode.USAGE, "`stemsep serve`: another server owns the job queue of this state dir"),
    "E_JOB_UNKNOWN": HostCode(ExitCode.USAGE, "`stemsep serve`: no job has this id"),
    "E_JOB_FINISHED": HostCode(ExitCode.USAGE, "`stemsep serve`: the job has finished, so it cannot be cancelled"),
    "E_JOB_NOT_QUEUED": HostCode(ExitCode.USAGE, "`stemsep serve`: a reorder names a job that is not queued"),
    "E_PATH_REFUSED": HostCode(ExitCode.USAGE, "`stemsep serve`: a client named a path the server will not read or "
                                               "write (relative)"),
    "E_PATH_NOT_FILE": HostCode(ExitCode.USAGE, "`stemsep serve`: an input a client named is not an existing file"),
    "E_OUTPUT_NOT_ALLOWED": HostCode(ExitCode.USAGE, "`stemsep serve`: an output dir outside the config's "
                                                     "`serve_output_dirs`"),
    "E_UPLOAD_UNKNOWN": HostCode(ExitCode.USAGE, "`stemsep serve`: an input names an upload the server does not hold"),
    "E_UPLOAD_TOO_LARGE": HostCode(ExitCode.USAGE, "`stemsep serve`: an upload is larger than the server's limit"),
    "E_UNAUTHORIZED": HostCode(ExitCode.USAGE, "`stemsep serve --http`: a request without the server's bearer token"),
    "E_SERVE_INSECURE": HostCode(ExitCode.USAGE, "`stemsep serve --http`: another address than loopback without an "
                                                 "explicit token"),
    "E_STEM_UNKNOWN": HostCode(ExitCode.USAGE, "`stemsep serve --http`: the job has no stem of that name (its stems "
                                               "are listed)"),
    "E_SERVE_NOT_INSTALLED": HostCode(ExitCode.USAGE, "`stemsep serve --http` without the `serve` extra (Starlette, "
                                                      "uvicorn) installed"),
    # registry and configuration content
    "E_CONFIG": HostCode(ExitCode.INVALID, "a bad key or value in config.toml, a STEMSEP_* variable or a flag"),
    "E_REGISTRY_INVALID": HostCode(ExitCode.INVALID, "registry content breaks the schema or a semantic rule"),
    "E_REGISTRY_UNREADABLE": HostCode(ExitCode.USAGE, "a registry file is missing, unreadable or not JSON"),
    "E_DUPLICATE_MODEL_ID": HostCode(ExitCode.INVALID, "two registry files define the same model id"),
    "E_DOCTOR_MISSING": HostCode(ExitCode.INVALID, "`stemsep doctor` found something needed missing: uv, a Python, "
                                                   "a writable state dir, ffmpeg for an audio-separator env"),
    "E_RECIPE_INVALID": HostCode(ExitCode.INVALID, "a recipe file breaks the recipe schema (JSON paths listed)"),
    "E_RECIPE_UNREADABLE": HostCode(ExitCode.USAGE, "a recipe file is missing, unreadable or not JSON"),
    "E_UNKNOWN_RECIPE": HostCode(ExitCode.USAGE, "no recipe has this id (nearest ids suggested)"),
    "E_DUPLICATE_RECIPE_ID": HostCode(ExitCode.INVALID, "two recipe files define the same recipe id"),
    # preflight and routing
    "E_PREFLIGHT_BLOCKED": HostCode(ExitCode.PREFLIGHT_BLOCKED,
                                    "preflight blocked the job; `separate` exits with the blocking findings' own "
                                    "exit code when they all agree (docs/preflight.md)"),
    "E_RUNTIME_NOT_ALLOWED": HostCode(ExitCode.PREFLIGHT_BLOCKED, "the model does not allow the requested runtime"),
    "E_RUNTIME_CANNOT_RUN": HostCode(ExitCode.PREFLIGHT_BLOCKED, "the runtime's capability facts exclude the model "
                                     "(registry/capabilities.py): it would fail to load there"),
    "E_NO_RUNTIME": HostCode(ExitCode.PREFLIGHT_BLOCKED, "the model's registry entry allows no runtime"),
    "E_SETTINGS": HostCode(ExitCode.PREFLIGHT_BLOCKED, "a setting cannot be translated for the chosen runtime"),
    # envs
    "E_UNRESOLVABLE": HostCode(ExitCode.UNRESOLVABLE, "the env's requirements conflict (the packages are named)"),
    "E_ENV_BUILD": HostCode(ExitCode.ENV_BUILD, "the env could not be built: index unreachable, install or "
                                                "health check failed"),
    "E_ENV_DAMAGED": HostCode(ExitCode.ENV_BUILD, "`env verify` found installed files missing or modified (by "
                                                  "package), or `env repair` could not make them verify"),
    "E_REPLAY_LOCK_UNAVAILABLE": HostCode(ExitCode.UNRESOLVABLE, "`debug replay`: the bundle's lock no longer installs "
                                          "here: a pinned version (or its locked file) is gone from the package "
                                          "sources (the pins are named)"),
    "E_ADOPT_NO_PIP": HostCode(ExitCode.ENV_BUILD, "an adopted env's pip does not answer (missing, or too old for "
                                                 "`pip list --format=json`): its distributions cannot be listed"),
    "E_ENV_NOT_BUILT": HostCode(ExitCode.ENV_BUILD, "`env run`/`env shell`: the model's env is not built or is "
                                                    "broken (add --build), or the env's interpreter is gone"),
    "E_NO_INTERPRETER": HostCode(ExitCode.NO_INTERPRETER, "no Python satisfies the env's range (what was found "
                                                          "is listed)"),
    "E_STORE": HostCode(ExitCode.STORE, "a state dir cannot be written: read-only, full, not a directory"),
    "E_STORE_DISK_SPACE": HostCode(ExitCode.STORE, "not enough free space in the model store for a download"),
    # model store
    "E_ARTIFACT": HostCode(ExitCode.ARTIFACT, "a model file could not be fetched or verified"),
    "E_ARTIFACT_NO_SOURCE": HostCode(ExitCode.ARTIFACT, "the registry gives the file no URL: import it yourself"),
    "E_ARTIFACT_HASH_REQUIRED": HostCode(ExitCode.ARTIFACT, "`--require-hashes` and the registry pins no sha256"),
    "E_ARTIFACT_SHA256_MISMATCH": HostCode(ExitCode.ARTIFACT, "the file's sha256 is not the pinned one"),
    "E_ARTIFACT_SIZE_MISMATCH": HostCode(ExitCode.ARTIFACT, "the file's size is not the registry's"),
    "E_ARTIFACT_HTML_PAGE": HostCode(ExitCode.ARTIFACT, "the URL served a web page, not the file"),
    "E_ARTIFACT_DOWNLOAD_FAILED": HostCode(ExitCode.ARTIFACT, "a download failed after retries; for several models, "
                                                              "their own exit code when they all agree"),
    "E_ARTIFACT_UNSAFE_PATH": HostCode(ExitCode.ARTIFACT, "a file name would escape the model's store dir"),
    "E_ARTIFACT_OFFLINE": HostCode(ExitCode.ARTIFACT, "a download is needed but the machine is offline"),
    "E_ARTIFACT_MISSING": HostCode(ExitCode.ARTIFACT, "a model file is not in the store and downloads are off"),
    "E_ARTIFACT_BUSY": HostCode(ExitCode.ARTIFACT, "another process is downloading or importing into the "
                                                        "model's folder"),
    "E_CODE_TRUST_MISMATCH": HostCode(ExitCode.ARTIFACT, "`models trust`: the file is not the one reviewed or pinned"),
    "E_REPLAY_ARTIFACT_MISMATCH": HostCode(ExitCode.ARTIFACT, "`debug replay`: a model file's sha256 is not the one "
                                           "the bundle recorded (--allow-mismatch runs anyway)"),
    # worker
    "E_WORKER": HostCode(ExitCode.WORKER, "the worker failed"),
    "E_WORKER_START": HostCode(ExitCode.WORKER, "the env's interpreter could not be run"),
    "E_WORKER_CRASHED": HostCode(ExitCode.WORKER, "the worker exited mid-job (names the signal or exit "
                                                          "code; SIGKILL hints at memory)"),
    "E_WORKER_TIMEOUT": HostCode(ExitCode.TIMEOUT, "the worker took too long"),
    "E_HANDSHAKE_TIMEOUT": HostCode(ExitCode.TIMEOUT, "no `hello` within 30 s or no `ready` within 600 s"),
    "E_WORKER_SILENT": HostCode(ExitCode.TIMEOUT, "no line at all (not even a heartbeat) for 30 s "
                                                           "during a job: the worker is frozen"),
    "E_JOB_TIMEOUT": HostCode(ExitCode.TIMEOUT, "the job ran past `--job-timeout`"),
    "E_JOB": HostCode(ExitCode.JOB, "the worker reported a job error (its own code replaces this one)"),
    # jobs
    "E_INPUT": HostCode(ExitCode.INPUT, "an input cannot be separated (the `E_INPUT_*` codes of preflight and "
                                          "the worker say why)"),
    "E_INPUT_BLOCKED": HostCode(ExitCode.PREFLIGHT_BLOCKED, "preflight blocked one input of a recipe run; the "
                                                            "others ran"),
    "E_BATCH": HostCode(None, "some inputs of a batch failed (each is named); exits with the first failure's code"),
    # stemsep batch (docs/scale.md)
    "E_MANIFEST_INVALID": HostCode(ExitCode.USAGE, "a batch manifest cannot be read, names an unknown field, a "
                                                   "recipe with a model or runtime, or repeats an item"),
    "E_BATCH_LOCKED": HostCode(ExitCode.USAGE, "another batch is writing to the same output dir"),
    "E_RAY_UNAVAILABLE": HostCode(ExitCode.USAGE, "`--engine ray` without Ray installed, or the cluster cannot be "
                                                  "reached"),
    "E_RAY_TASK": HostCode(ExitCode.WORKER, "Ray could not run an input: its actor died more often than Ray "
                                            "restarts it"),
    # every command
    "E_CANCELLED": HostCode(ExitCode.CANCELLED, "Ctrl-C (SIGINT) stopped the command"),
    "E_TERMINATED": HostCode(ExitCode.TERMINATED, "SIGTERM stopped the command, cleaned up as after Ctrl-C"),
    "E_HANGUP": HostCode(ExitCode.HANGUP, "the terminal hung up (SIGHUP) and the command stopped, cleaned up "
                                          "as after Ctrl-C; under `nohup` it keeps going"),
    "E_INTERNAL": HostCode(ExitCode.INTERNAL, "a bug in stemsep: an unexpected exception; the message names the "
                                              "log file that holds its traceback"),
}
