"""Packages published only as sdists are built in an isolated env whose requirements uv resolves on its
own. neuraloperator 1.0.2 needs torch-harmonics 0.7.3, an sdist: its build-system asks only for
setuptools (setup.py builds its C++ helper only when torch happens to be importable), so it builds fine
here. But an sdist whose *build* needs torch would get the index's newest torch -- on PyPI the
multi-GB CUDA build -- instead of the machine's (e.g. the local CPU wheel). The env manager passes the
machine's pins (overrides, constraints) to uv as build constraints, for resolving and for installing.

Proof, offline and fast: a local wheel dir offers a newer stand-in "torch 99.0" next to the machine's
torch; an sdist whose build requires torch records the torch it was built with. Without the build
constraints it would record 99.0."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_requirements

PROBE = "stemsep-build-probe"


def stub_torch_wheel(folder: Path) -> Path:
    """A newer 'torch' that imports fine and says it is 99.0: what an index would offer first."""
    path = folder / "torch-99.0-py3-none-any.whl"
    files = {"torch/__init__.py": "__version__ = '99.0'\n",
             "torch-99.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: torch\nVersion: 99.0\n",
             "torch-99.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files["torch-99.0.dist-info/RECORD"] = "".join(f"{name},,\n" for name in files) + "torch-99.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def probe_sdist(folder: Path) -> Path:
    """An sdist whose build needs torch; the module it installs says which torch built it. A fresh
    nonce each run: uv must build it, not reuse a wheel cached from an earlier run."""
    root = "stemsep_build_probe-1.0"
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61", "torch"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": ("import torch\nfrom setuptools import setup\n"
                     "open('stemsep_build_probe.py', 'w').write(f'BUILT_WITH = {torch.__version__!r}\\n')\n"
                     f"setup(name='{PROBE}', version='1.0', py_modules=['stemsep_build_probe'])  # {uuid.uuid4().hex}\n"),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n",
    }
    path = folder / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_sdist_builds_use_the_machines_torch(tmp_path: Path, stemsep_home: Path) -> None:
    machine = load_config()
    torch_pins = [o for o in machine.overrides if o.split("=")[0].strip().lower() == "torch"]
    if not torch_pins or not machine.find_links:
        pytest.skip("the machine config pins no local torch (STEMSEP_OVERRIDES / STEMSEP_FIND_LINKS)")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    stub_torch_wheel(wheels)
    probe_sdist(wheels)
    # The build env's setuptools, from PyPI once, so the env itself is built offline.
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                    "-d", str(wheels), "setuptools"], check=True, timeout=300)
    config = load_config(find_links=[*machine.find_links, str(wheels)], offline=True)
    env = EnvManager(config).ensure(request_for_requirements([f"{PROBE}==1.0"], config=config))
    built_with = subprocess.run([str(env.python), "-c", "import stemsep_build_probe as p; print(p.BUILT_WITH)"],
                                capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
    assert built_with.stdout.strip() == torch_pins[0].split("==")[1]
