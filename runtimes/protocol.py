"""The worker protocol: JSON lines between the host (`envmgr`) and a worker (`runtimes.worker`).

Stdlib only: the host and every worker env import this one module, so both sides always agree on
what a valid message is. The full specification (every message, field and error code) is
docs/protocol.md; keep the two in step and bump PROTOCOL_VERSION on any incompatible change.

Rules: one UTF-8 JSON object per line, at most MAX_LINE_BYTES; every object has a string `type`;
unknown fields are ignored (additions are compatible), unknown types and wrong field types are
protocol errors. `decode` raises ProtocolError and nothing else, whatever bytes it is given.
"""

from __future__ import annotations

import json
import math
import re
from typing import IO, Any

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # 1 MiB: big data travels as files, messages carry paths

# --- error codes -------------------------------------------------------------------------------
# Protocol errors: the stream itself is broken (either side may raise them).
E_PROTOCOL_MALFORMED = "E_PROTOCOL_MALFORMED"  # not UTF-8, not JSON, not an object, no `type`
E_PROTOCOL_LINE_TOO_LONG = "E_PROTOCOL_LINE_TOO_LONG"
E_PROTOCOL_UNKNOWN_TYPE = "E_PROTOCOL_UNKNOWN_TYPE"
E_PROTOCOL_BAD_FIELD = "E_PROTOCOL_BAD_FIELD"  # a required field missing or of the wrong type
E_PROTOCOL_VERSION = "E_PROTOCOL_VERSION"
E_PROTOCOL_UNEXPECTED = "E_PROTOCOL_UNEXPECTED"  # valid message, wrong moment (e.g. a second job while busy)
# Job errors: the worker reports them in `error` and stays usable for the next job.
E_INPUT_NOT_FOUND = "E_INPUT_NOT_FOUND"
E_INPUT_UNDECODABLE = "E_INPUT_UNDECODABLE"
E_INPUT_EMPTY = "E_INPUT_EMPTY"  # decodes, but holds 0 frames
E_INPUT_CHANNELS = "E_INPUT_CHANNELS"  # channel count the model cannot take
E_INPUT_NONFINITE = "E_INPUT_NONFINITE"  # NaN or infinite samples
E_INPUT_SAMPLE_RATE = "E_INPUT_SAMPLE_RATE"  # a rate the model cannot take (and the runtime does not resample)
E_BAD_JOB = "E_BAD_JOB"  # job fields that cannot be honoured (unsafe output name, unknown format)
E_MODEL_TYPE_UNKNOWN = "E_MODEL_TYPE_UNKNOWN"
E_ARTIFACT_MISSING = "E_ARTIFACT_MISSING"
E_MODEL_LOAD = "E_MODEL_LOAD"
E_INFERENCE = "E_INFERENCE"
E_OUTPUT_WRITE = "E_OUTPUT_WRITE"
E_CANCELLED = "E_CANCELLED"
E_WORKER_INTERNAL = "E_WORKER_INTERNAL"  # anything else, including SystemExit from a library
E_OP_INVALID = "E_OP_INVALID"  # an `op` job's operation refused its inputs or params (runtimes/ops OpError)
# Model code artifacts (runtimes/code_artifacts.py): the worker runs code only with a matching sha256 pin.
E_CODE_UNTRUSTED = "E_CODE_UNTRUSTED"  # no sha256 pins the code: it does not run
E_CODE_HASH_MISMATCH = "E_CODE_HASH_MISMATCH"  # the file is not the pinned one: it does not run
E_CODE_IMPORT = "E_CODE_IMPORT"  # the code imports something the env lacks
# Worker start-up errors (sent with job = null, then the worker exits).
E_RUNTIME_UNKNOWN = "E_RUNTIME_UNKNOWN"
E_RUNTIME_IMPORT = "E_RUNTIME_IMPORT"

OUTPUT_FORMATS = ("wav", "flac")

# --- message schema ------------------------------------------------------------------------------
# Field kinds: checked by `_check`. "?" prefix: optional (absent or null allowed).
_STR, _INT, _NUM, _BOOL, _DICT, _LIST = "str", "int", "num", "bool", "dict", "list"

# Worker -> host
HELLO = {"protocol": _INT, "pid": _INT, "python": _STR, "runtime": _STR, "env_id": "?str", "worker_code": "?str"}
READY = {"runtime": _STR, "versions": _DICT, "device": _STR, "warnings": "?list"}
PROGRESS = {"job": _STR, "stage": _STR, "done": _NUM, "total": _NUM}
STEM = {"job": _STR, "name": _STR, "path": _STR, "sample_rate": _INT, "channels": _INT, "frames": _INT,
        "format": "?str", "subtype": "?str"}
RESULT = {"job": _STR, "stems": _LIST, "seconds": _NUM, "warnings": "?list"}
ERROR = {"job": "?str", "code": _STR, "message": _STR, "hint": "?str", "traceback": "?str"}
HEARTBEAT = {"job": "?str"}
# Host -> worker
SEPARATE = {"job": _STR, "model": _DICT, "artifacts": _DICT, "settings": _DICT, "input": _STR,
            "output_dir": _STR, "output_format": _STR, "output_names": _DICT, "output_template": _STR,
            "device": "?str"}
# An audio operation of a recipe (runtimes/ops): input stem files -> one stem file, written as stems are.
OP = {"job": _STR, "op": _STR, "params": _DICT, "inputs": _LIST, "output_dir": _STR, "output_format": _STR,
      "output_name": _STR, "stem": _STR}
CANCEL = {"job": _STR}
SHUTDOWN: dict[str, str] = {}

WORKER_MESSAGES = {"hello": HELLO, "ready": READY, "progress": PROGRESS, "stem": STEM, "result": RESULT,
                   "error": ERROR, "heartbeat": HEARTBEAT}
HOST_MESSAGES = {"separate": SEPARATE, "op": OP, "cancel": CANCEL, "shutdown": SHUTDOWN}
MESSAGES = {**WORKER_MESSAGES, **HOST_MESSAGES}


class ProtocolError(Exception):
    """The stream broke the protocol. `code` is one of the E_PROTOCOL_* codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _DICT:
        return isinstance(value, dict)
    return isinstance(value, list)


def _check(msg: dict[str, Any], schema: dict[str, str]) -> None:
    for field, kind in schema.items():
        optional = kind.startswith("?")
        kind = kind.lstrip("?")
        value = msg.get(field)
        if value is None:
            if optional:
                continue
            raise ProtocolError(E_PROTOCOL_BAD_FIELD, f"`{msg['type']}` message lacks required field `{field}`")
        if not _kind_ok(value, kind):
            raise ProtocolError(E_PROTOCOL_BAD_FIELD,
                                f"`{msg['type']}.{field}` must be {kind}, got {type(value).__name__}")


def encode(msg: dict[str, Any]) -> bytes:
    """One message as one line. Raises ProtocolError if it would break the protocol itself."""
    schema = MESSAGES.get(msg.get("type"))  # type: ignore[arg-type]
    if schema is None:
        raise ProtocolError(E_PROTOCOL_UNKNOWN_TYPE, f"unknown message type {msg.get('type')!r}")
    _check(msg, schema)
    try:
        # ASCII-only output: lone surrogates (valid in JSON escapes) can never make a line unencodable.
        line = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    except (TypeError, ValueError) as exc:  # NaN, infinity, objects JSON cannot hold
        raise ProtocolError(E_PROTOCOL_BAD_FIELD, f"`{msg['type']}` message cannot be sent as JSON: {exc}") from None
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(E_PROTOCOL_LINE_TOO_LONG,
                            f"`{msg['type']}` message is {len(line)} bytes, over the {MAX_LINE_BYTES}-byte line cap")
    return line


def decode(line: bytes, accept: dict[str, dict[str, str]] = MESSAGES) -> dict[str, Any]:
    """Parse one line into a message of a type in `accept`. Raises ProtocolError on anything else."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(E_PROTOCOL_LINE_TOO_LONG, f"line of {len(line)} bytes exceeds the {MAX_LINE_BYTES}-byte cap")
    try:
        text = line.decode("utf-8")
        msg = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(E_PROTOCOL_MALFORMED, f"not a UTF-8 JSON line ({exc.__class__.__name__}): {_preview(line)}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(E_PROTOCOL_MALFORMED, f"a line must hold a JSON object, got {type(msg).__name__}: {_preview(line)}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(E_PROTOCOL_MALFORMED, f"message has no string `type`: {_preview(line)}")
    schema = accept.get(kind)
    if schema is None:
        raise ProtocolError(E_PROTOCOL_UNKNOWN_TYPE, f"unknown message type {kind[:80]!r}")
    _check(msg, schema)
    return msg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf, which could never be sent on
        raise ValueError(f"{text[:20]} overflows a float")
    return value


def _preview(line: bytes, limit: int = 120) -> str:
    text = line[:limit].decode("utf-8", "backslashreplace").rstrip("\n")
    return repr(text) + ("..." if len(line) > limit else "")


def staging_dir_name(job: str) -> str:
    """The dir inside the output dir where a job's files grow until they are complete. Both sides know
    it: the worker writes there, the host removes it when a worker died before it could."""
    return ".stemsep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", job)[:64] + ".partial"


def version_mismatch(host: int, worker: int) -> str:
    """The one wording of a version mismatch, so both sides name both versions the same way."""
    return f"protocol version mismatch: host speaks {host}, worker speaks {worker}"


class LineReader:
    """Reads capped lines from a binary stream. An over-long line is skipped to its end and reported,
    so the stream stays in step for the next line."""

    def __init__(self, stream: IO[bytes], max_bytes: int = MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._max = max_bytes

    def read_line(self) -> bytes | None:
        """The next line (with its newline), or None at EOF. Raises ProtocolError for an over-long line."""
        line = self._stream.readline(self._max + 1)
        if not line:
            return None
        if len(line) <= self._max:  # the cap counts the newline, as `encode` does
            return line
        skipped = len(line)
        while not line.endswith(b"\n"):  # discard the rest of the over-long line
            line = self._stream.readline(1 << 16)
            if not line:
                break
            skipped += len(line)
        raise ProtocolError(E_PROTOCOL_LINE_TOO_LONG,
                            f"line of {skipped} bytes or more exceeds the {self._max}-byte cap")
