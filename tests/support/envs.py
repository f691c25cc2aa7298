"""Seam for tests that need a Python env with given packages (torch, msst...).

Interim implementation with raw uv, until envmgr's EnvManager can serve these requests; then this
module delegates to it (one place to change). Honours the same STEMSEP_* machine settings as envmgr:
STEMSEP_FIND_LINKS (os.pathsep-separated), STEMSEP_OVERRIDES (comma-separated pins), STEMSEP_PYTHON.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import uv
from filelock import FileLock


def env_python(requirements: list[str], *, python: str | None = None) -> Path:
    """Return the interpreter of a venv holding `requirements`, building it once per requirement set."""
    python = python or os.environ.get("STEMSEP_PYTHON", "3.11")
    find_links = [p for p in os.environ.get("STEMSEP_FIND_LINKS", "").split(os.pathsep) if p]
    overrides = [p.strip() for p in os.environ.get("STEMSEP_OVERRIDES", "").split(",") if p.strip()]
    key = hashlib.sha256(repr((sorted(requirements), python, find_links, overrides)).encode()).hexdigest()[:16]
    root = Path(os.environ["STEMSEP_HOME"]) / "test-envs"
    root.mkdir(parents=True, exist_ok=True)
    env = root / key
    exe = env / "bin" / "python"
    with FileLock(str(root / f"{key}.lock")):
        if (env / ".complete").exists():
            return exe
        uv_bin = uv.find_uv_bin()
        subprocess.run([uv_bin, "venv", "-q", "--clear", "-p", python, str(env)], check=True)
        cmd = [uv_bin, "pip", "install", "-q", "-p", str(exe), *requirements]
        for fl in find_links:
            cmd += ["--find-links", fl]
        if overrides:
            ov = root / f"{key}.overrides.txt"
            ov.write_text("\n".join(overrides) + "\n")
            cmd += ["--override", str(ov)]
        subprocess.run(cmd, check=True)
        (env / ".complete").write_text("ok")
    return exe
