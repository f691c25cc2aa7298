"""The capability fact `torchaudio-built-for-env-torch` (registry/capabilities.py) holds where preflight uses it: msst's
htdemucs imports torchaudio (msst/models/demucs4ht.py -> openunmix), and preflight's verdict on the env's
torch/torchaudio pair agrees with importing torchaudio in that env (on a machine whose torch override leaves
torchaudio mismatched, as this dev machine's does, it blocks the job before a worker starts)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import home_sharing_session_envs, run_cli

pytestmark = pytest.mark.envs


@pytest.fixture(scope="module")
def htdemucs_msst_env(stemsep_home: Path) -> Any:
    """The env `stemsep separate -m htdemucs --runtime msst` uses (msst[htdemucs]), built in the session's store."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.loader import load_registry

    manager = EnvManager()
    return manager.ensure(request_for_model(load_registry().get("htdemucs"), "msst", manager.config))


def torchaudio_broken(python: Path) -> str:
    """Why torchaudio cannot be imported by this interpreter ('' when it can)."""
    proc = subprocess.run([str(python), "-c", "import torchaudio"], capture_output=True, text=True, timeout=300,
                          check=False)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def test_preflight_knows_whether_torchaudio_fits_the_envs_torch(htdemucs_msst_env: Any, tmp_path: Path) -> None:
    from tests.runtimes.conftest import demo_clip

    clip = demo_clip(tmp_path / "clip.wav", 1.0)
    proc = run_cli("preflight", "--json", "--no-download", "-m", "htdemucs", "--runtime", "msst", clip,
                   env=home_sharing_session_envs(tmp_path / "home"), cwd=tmp_path, timeout=900)
    report = json.loads(proc.stdout)
    env = report["resolved"]["requirements_status"]["env"]
    assert env["state"] == "ready" and env["id"] == htdemucs_msst_env.id, env
    codes = {e["code"]: e for e in report["errors"]}
    broken = torchaudio_broken(htdemucs_msst_env.python)
    assert ("E_TORCHAUDIO_MISMATCH" in codes) == bool(broken), (broken, list(codes))
    if broken:
        assert proc.returncode == 3 and "find-links" in codes["E_TORCHAUDIO_MISMATCH"]["hint"]
