"""The report's contract: docs/preflight.md lists every code as the rules define it, the JSON Schema
matches the states the code produces and rejects malformed reports, and preflight imports no torch."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from envmgr.artifacts import ArtifactState
from envmgr.preflight import rules
from tests.conftest import REPO

DOC = REPO / "docs" / "preflight.md"


def test_docs_list_every_code_as_defined() -> None:
    rows = re.findall(r"^\| `([EW]_[A-Z0-9_]+)` \| (\w+) \| (yes)? \| (\d*) \| (.+) \|$", DOC.read_text(), re.M)
    documented = {code: (topic, bool(fatal), exit_code, summary) for code, topic, fatal, exit_code, summary in rows}
    assert set(documented) == set(rules.CODES)
    for code, c in rules.CODES.items():
        exit_code = str(int(c.exit_code)) if code.startswith("E_") else ""
        assert documented[code] == (c.topic, c.fatal, exit_code, c.summary), code


def test_warnings_are_never_fatal() -> None:
    assert not [c for c in rules.CODES.values() if c.code.startswith("W_") and c.fatal]


def test_schema_enums_follow_the_code(schema_validator: Any) -> None:
    defs = schema_validator.schema["$defs"]
    artifact = defs["requirements"]["properties"]["artifacts"]["items"]["properties"]
    assert set(artifact["state"]["enum"]) == {s.value for s in ArtifactState}
    assert set(schema_validator.schema["properties"]["enforcement"]["properties"]["mode"]["enum"]) == set(rules.MODES)


def test_schema_rejects_malformed_reports(tmp_path: Path, run: Any, schema_validator: Any, light_env: Any) -> None:
    report = run([tmp_path / "nope.wav"], "pf-steps").report
    assert not list(schema_validator.iter_errors(report))

    def broken(change: Any) -> list[Any]:
        bad = copy.deepcopy(report)
        change(bad)
        return list(schema_validator.iter_errors(bad))

    assert broken(lambda r: r.pop("can_proceed"))
    assert broken(lambda r: r["errors"][0].update(code="not-a-code"))
    assert broken(lambda r: r["errors"][0].pop("blocking"))
    assert broken(lambda r: r["warnings"].append({**r["errors"][0]}))  # an error among the warnings
    assert broken(lambda r: r["resolved"]["requirements_status"]["env"].update(state="fine"))
    assert broken(lambda r: r.update(extra=1))


def test_preflight_imports_no_torch(tmp_path: Path, light_env: Any) -> None:
    """In a fresh process, a full preflight of a model whose env exists leaves torch unimported, and numpy
    too: the input probe calls libsndfile directly (envmgr.preflight.audio_probe), ~80 ms less per CLI start. Once the
    registry's verdict is remembered, pydantic too: the model is read frozen (registry.frozen), ~0.2 s less."""
    from tests.preflight.conftest import write_audio

    song = write_audio(tmp_path / "song.wav")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from envmgr.preflight.run import PreflightRequest, run_preflight\n"
        f"r = run_preflight(PreflightRequest([Path({str(song)!r})], 'builtin-center-split'))\n"
        "print(json.dumps({'ok': r.can_proceed, 'env': r.report['resolved']['requirements_status']['env']['state'],"
        " 'heavy': sorted(m for m in ('torch', 'onnxruntime', 'audio_separator', 'msst', 'numpy', 'soundfile',"
        " 'pydantic') if m in sys.modules)}))\n"
    )
    for _ in range(2):  # the first run may validate the registry (pydantic) and remember its verdict
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"ok": True, "env": "ready", "heavy": []}
