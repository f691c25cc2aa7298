"""The protocol module: round trips, every way a line can be wrong, the line cap, and a hypothesis
fuzz of the decoder (well over 10k random and mutated lines) that may only ever raise ProtocolError."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtimes import protocol as p

VALID: list[dict[str, Any]] = [
    {"type": "hello", "protocol": 1, "pid": 42, "python": "3.11.7", "runtime": "stemsep-legacy", "env_id": "e",
     "worker_code": "abc"},
    {"type": "ready", "runtime": "msst", "versions": {"torch": "2.13.0"}, "device": "cpu", "warnings": []},
    {"type": "progress", "job": "j", "stage": "separate", "done": 3, "total": 10},
    {"type": "stem", "job": "j", "name": "vocals", "path": "/o/ü ñ.wav", "sample_rate": 44100, "channels": 2,
     "frames": 10},
    {"type": "result", "job": "j", "stems": [], "seconds": 1.5},
    {"type": "error", "job": None, "code": "E_X", "message": "m", "hint": "h", "traceback": None},
    {"type": "heartbeat", "job": None},
    {"type": "separate", "job": "j", "model": {"id": "m"}, "artifacts": {}, "settings": {}, "input": "/i.wav",
     "output_dir": "/o", "output_format": "wav", "output_names": {}, "output_template": "x_({stem}).wav"},
    {"type": "cancel", "job": "j"},
    {"type": "shutdown"},
]


@pytest.mark.parametrize("msg", VALID, ids=[m["type"] for m in VALID])
def test_every_message_round_trips_as_one_line(msg: dict[str, Any]) -> None:
    line = p.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.decode(line) == msg


@pytest.mark.parametrize("line, code", [
    (b"\xff\xfe\n", p.E_PROTOCOL_MALFORMED),
    (b"{not json}\n", p.E_PROTOCOL_MALFORMED),
    (b"[]\n", p.E_PROTOCOL_MALFORMED),
    (b'{"job": "j"}\n', p.E_PROTOCOL_MALFORMED),
    (b'{"type": 3}\n', p.E_PROTOCOL_MALFORMED),
    (b'{"type": "progress", "job": "j", "stage": "s", "done": NaN, "total": 1}\n', p.E_PROTOCOL_MALFORMED),
    (b'{"type": "teleport"}\n', p.E_PROTOCOL_UNKNOWN_TYPE),
    (b'{"type": "progress", "job": "j", "stage": "s", "done": 1}\n', p.E_PROTOCOL_BAD_FIELD),
    (b'{"type": "progress", "job": "j", "stage": "s", "done": true, "total": 1}\n', p.E_PROTOCOL_BAD_FIELD),
    (b'{"type": "hello", "protocol": "1", "pid": 1, "python": "3", "runtime": "r"}\n', p.E_PROTOCOL_BAD_FIELD),
    (b'{"type": "cancel", "job": null}\n', p.E_PROTOCOL_BAD_FIELD),
])
def test_bad_lines_are_protocol_errors(line: bytes, code: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.decode(line)
    assert err.value.code == code


def test_direction_is_checked_and_extra_fields_are_tolerated() -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.decode(p.encode({"type": "shutdown"}), p.WORKER_MESSAGES)
    assert err.value.code == p.E_PROTOCOL_UNKNOWN_TYPE
    assert p.decode(b'{"type": "shutdown", "reason": "later versions may add fields"}\n') == {
        "type": "shutdown", "reason": "later versions may add fields"}


def test_encode_refuses_what_would_break_the_stream() -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.encode({"type": "progress", "job": "j", "stage": "x" * p.MAX_LINE_BYTES, "done": 0, "total": 1})
    assert err.value.code == p.E_PROTOCOL_LINE_TOO_LONG
    with pytest.raises(p.ProtocolError):
        p.encode({"type": "progress", "job": "j", "stage": "s", "done": float("nan"), "total": 1})
    with pytest.raises(p.ProtocolError):
        p.encode({"type": "nope"})
    assert b"\n" not in p.encode({"type": "cancel", "job": "a\nb"})[:-1]  # newlines inside strings are escaped


def test_line_reader_skips_an_oversized_line_and_stays_in_step() -> None:
    stream = io.BytesIO(b"a" * 50 + b"\n" + b"b" * 10 + b"\n" + b"c" * 11 + b"\n" + b"tail")
    reader = p.LineReader(stream, max_bytes=11)
    with pytest.raises(p.ProtocolError) as err:
        reader.read_line()
    assert err.value.code == p.E_PROTOCOL_LINE_TOO_LONG and "51 bytes" in err.value.message
    assert reader.read_line() == b"b" * 10 + b"\n"  # exactly the cap, newline included
    with pytest.raises(p.ProtocolError):
        reader.read_line()  # one byte over
    assert reader.read_line() == b"tail"
    assert reader.read_line() is None


def test_version_mismatch_names_both_versions() -> None:
    assert p.version_mismatch(1, 2) == "protocol version mismatch: host speaks 1, worker speaks 2"


# --- fuzz ----------------------------------------------------------------------------------------
LINES_PER_EXAMPLE = 40
EXAMPLES = 260  # 10,400 lines
_seen = {"lines": 0}

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(_json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                            max_size=4), max_leaves=5)
_typed = st.builds(lambda t, extra: {**extra, "type": t}, st.sampled_from(sorted(p.MESSAGES) + ["", "x"]),
                   st.dictionaries(st.sampled_from(["job", "done", "total", "stage", "protocol", "pid", "name",
                                                    "path", "code", "message", "model", "stems", "seconds"]),
                                   _json, max_size=6))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    line = bytearray(p.encode(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(0, len(line) - 1)))
        if op == "flip" and line:
            line[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            line[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and line:
            del line[pos]
        elif op == "truncate":
            del line[pos:]
        elif op == "dup":
            line[pos:pos] = line[: draw(st.integers(0, 40))]
    return bytes(line)


_line = st.one_of(st.binary(max_size=200), _mutated(), _typed.map(lambda m: json.dumps(m).encode()),
                  _json.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_line, min_size=LINES_PER_EXAMPLE, max_size=LINES_PER_EXAMPLE))
def test_fuzz_decoder_only_ever_raises_protocol_errors(lines: list[bytes]) -> None:
    for line in lines:
        try:
            msg = p.decode(line)
        except p.ProtocolError as exc:
            assert exc.code.startswith("E_PROTOCOL_")
        else:
            assert msg["type"] in p.MESSAGES
            assert p.decode(p.encode(msg)) == msg  # anything accepted can be sent on
    # And the same bytes as one stream through the capped reader.
    reader = p.LineReader(io.BytesIO(b"\n".join(lines)), max_bytes=150)
    while True:
        try:
            if reader.read_line() is None:
                break
        except p.ProtocolError as exc:
            assert exc.code == p.E_PROTOCOL_LINE_TOO_LONG
    _seen["lines"] += len(lines)


def test_fuzz_covered_at_least_10k_lines() -> None:
    if _seen["lines"] == 0:
        pytest.skip("run together with the fuzz test")
    assert _seen["lines"] >= 10_000


def test_lone_surrogates_survive_a_round_trip() -> None:
    msg = p.decode(b'{"type": "cancel", "job": "\\ud800 x"}\n')
    assert p.decode(p.encode(msg)) == msg
