"""`env verify` reads the RECORD files: a file that two packages both install (spafe 0.3.3 and torch_optimizer
0.1.0 each ship a top-level tests/__init__.py, so every msst[bandit] env holds the second one's) is intact when it
matches any package that claims it, and damaged when it matches none."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from envmgr.envs.verify import verify


def _install(site: Path, name: str, files: dict[str, bytes]) -> None:
    """A distribution as an installer leaves it: its files, then its RECORD (sha256, urlsafe b64, size)."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    rows = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(data)}")
    (info / "RECORD").write_text("\n".join([*rows, f"{info.name}/RECORD,,"]) + "\n")


def test_a_file_two_packages_install_verifies_against_either(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _install(site, "spafe", {"spafe/__init__.py": b"x = 1\n", "tests/__init__.py": b"# spafe's\n"})
    _install(site, "torch_optimizer", {"torch_optimizer/__init__.py": b"y = 2\n",
                                       "tests/__init__.py": b"# torch_optimizer's tests, longer\n"})
    result = verify(tmp_path, "env-x", locked={})
    assert not [p for p in result.packages if p.modified or p.missing], result.summary()
    (site / "tests" / "__init__.py").write_bytes(b"# edited by hand, neither one\n")
    result = verify(tmp_path, "env-x", locked={})
    damaged = {p.name: p.modified for p in result.packages if p.modified}
    assert damaged == {"spafe": ["lib/python3.11/site-packages/tests/__init__.py"],
                       "torch-optimizer": ["lib/python3.11/site-packages/tests/__init__.py"]}, damaged
