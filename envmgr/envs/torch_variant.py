"""Which torch build an env must hold, and whether the one it holds is that build.

uv's --torch-backend picks an index but does not lock the variant (docs/DESIGN.md §5), so the build is checked
after install from torch's own version file: the local label of a pinned version (`+cpu`) and
`torch.version.cuda` / `torch.version.hip` against the backend.
"""

from __future__ import annotations

import os
import re

from packaging.version import InvalidVersion, Version


def detect_nvidia() -> bool:
    """An NVIDIA driver is loaded (what uv's `auto` backend looks at too)."""
    return os.path.exists("/proc/driver/nvidia/version")


def pinned_local_label(overrides: list[str] | tuple[str, ...], package: str = "torch") -> str | None:
    """`torch==2.13.0+cpu` -> "cpu"; None when torch is not pinned to a local version."""
    from packaging.requirements import Requirement  # here: only a machine with overrides parses one
    from packaging.utils import canonicalize_name

    for text in overrides:
        req = Requirement(text)
        if canonicalize_name(req.name) != package:
            continue
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "+" in spec.version:
                return spec.version.split("+", 1)[1]
    return None


def variant_problems(torch_info: dict | None, *, backend: str, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """What is wrong with the torch found in an env (empty list: it is the requested build)."""
    if not torch_info:
        return ["torch is not installed"]
    version = torch_info.get("version") or ""
    cuda, hip = torch_info.get("cuda"), torch_info.get("hip")
    problems = []
    label = pinned_local_label(overrides)
    if label is not None:
        try:
            local = Version(version).local
        except InvalidVersion:
            local = None
        if local != label:
            problems.append(f"torch {version} is not the pinned +{label} build")
    if backend == "cpu" and (cuda or hip):
        problems.append(f"torch {version} is a GPU build (cuda={cuda}, hip={hip}) but torch_backend is cpu")
    match = re.fullmatch(r"cu(\d+)(\d)", backend)
    if match:
        want = f"{match.group(1)}.{match.group(2)}"
        if cuda != want:
            problems.append(f"torch {version} has CUDA {cuda} but torch_backend {backend} asks for CUDA {want}")
    match = re.fullmatch(r"rocm(\d+(?:\.\d+)*)", backend)
    if match and not (hip or "").startswith(match.group(1)):
        problems.append(f"torch {version} has ROCm/HIP {hip} but torch_backend {backend} asks for {match.group(1)}")
    return problems
