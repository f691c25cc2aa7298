"""Running uv (and pip for the fallback builder) with only StemSep's machine config in effect.

uv reads its own config files and UV_* variables; those would change what gets resolved without
changing the env id, so they are switched off (`--no-config`, resolution-affecting UV_* dropped) and
the machine config is passed explicitly instead.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from envmgr.config import MachineConfig

# UV_* variables that only tune transport (timeouts, TLS, concurrency), never what gets resolved.
_UV_PASS = ("UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_NATIVE_TLS", "UV_CONCURRENT_DOWNLOADS",
            "UV_CONCURRENT_BUILDS", "UV_CONCURRENT_INSTALLS", "UV_INSECURE_HOST", "UV_REQUEST_TIMEOUT")


def find_uv(config: MachineConfig) -> str | None:
    """The uv binary, or None when it is absent or switched off (use_uv = false)."""
    if not config.use_uv:
        return None
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def uv_env(config: MachineConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_PASS}
    env["UV_CACHE_DIR"] = str(config.uv_cache_dir)
    env["UV_PYTHON_DOWNLOADS"] = "never"  # an interpreter is chosen before uv runs; never fetch one behind our back
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_PREFIX", None)
    return env
PYTORCH_INDEX = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class Sources:
    """Where packages come from (part of an env request, so part of the resolution key)."""

    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    torch_backend: str

    def uv_args(self, *, offline: bool) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.torch_backend != "none":
            args += ["--torch-backend", self.torch_backend]
        if offline:
            args.append("--offline")
        return args

    def pip_args(self, *, offline: bool) -> list[str]:
        args: list[str] = []
        if offline:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.torch_backend not in ("none", "auto") and not offline:
            # What uv's --torch-backend does for us: PyTorch's own index for that build.
            args += ["--extra-index-url", f"{PYTORCH_INDEX}/{self.torch_backend}"]
        return args


def build_constraints(pins: tuple[str, ...] | list[str], folder: Path) -> list[str]:
    """uv args that hold sdist builds to the machine's pins (its overrides and constraints).

    A package published as an sdist is built in an isolated env whose requirements uv resolves on its
    own: a build that needs torch would get the index's torch (PyPI's is the multi-GB CUDA build) instead
    of the one this machine is configured for (e.g. the local CPU wheel). The pins apply there too."""
    if not pins:
        return []
    path = folder / "build-constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return ["--build-constraints", str(path)]


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
