"""mypy passes on envmgr/, registry/ and runtimes/ (the files and settings in pyproject's [tool.mypy]).

The seams between the parts are typed (registry.view.ModelView for entries, MachineConfig, Registry), so
reading a member a frozen entry does not declare, or passing the wrong thing across a seam, fails here.
Run with the test's own interpreter, as CI installs it (`pip install -e '.[test]'` brings mypy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mypy_passes_on_the_packages(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"mypy found problems (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
