"""docs/runtimes.md's generated table of what each runtime can run is in step with the registry and the capability
facts (like the schema drift check)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_runtime_table_in_docs_is_in_step() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "data" / "runtime_table.py"), "--check"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
