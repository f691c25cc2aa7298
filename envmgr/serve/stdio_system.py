"""Machine facts the app's `get-gpu-devices`, `ping` and `bridge_ready` read: GPUs from nvidia-smi (asked
once per server: the app polls every 30 s), CPU count and memory from the OS. No torch in the host."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Any


@functools.lru_cache(maxsize=1)
def _nvidia() -> tuple[list[dict[str, Any]], str | None]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], None
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None
    gpus: list[dict[str, Any]] = []
    driver = None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            memory = round(float(parts[2]) / 1024, 2) if parts[2].replace(".", "", 1).isdigit() else None
            gpus.append({"id": f"cuda:{parts[0]}", "index": int(parts[0]), "name": parts[1], "memory_gb": memory})
            driver = parts[3]
    if gpus:
        max(gpus, key=lambda g: float(g["memory_gb"] or 0))["recommended"] = True
    return gpus, driver


def gpu_indices() -> list[int]:
    """The NVIDIA GPUs this server may use, by nvidia-smi's index ([] without nvidia-smi or GPUs): one server slot
    each. A CUDA_VISIBLE_DEVICES the server was started with narrows them to the indices it names (UUIDs are
    not matched: then no slot is pinned and the workers inherit the variable as it is)."""
    listed = [int(g["index"]) for g in _nvidia()[0]]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return listed
    named = [int(v) for v in (v.strip() for v in visible.split(",")) if v.isdigit()]
    return [i for i in dict.fromkeys(named) if i in listed]


def gpu_devices() -> dict[str, Any]:
    gpus, driver = _nvidia()
    best = next((g for g in gpus if g.get("recommended")), None)
    return {"gpus": [dict(g) for g in gpus], "gpu_count": len(gpus), "has_cuda": bool(gpus), "cuda_version": driver,
            "system_info": {"processor": _processor(), "cpu_count": os.cpu_count() or 1,
                            "memory_total_gb": _memory_gb()},
            "recommended_profile": {"profile_name": "cuda", "settings": {}, "vram_gb": best["memory_gb"]} if best else None}


def stemsep_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stemsep-runtime")
    except PackageNotFoundError:
        return "unknown"


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 2)
    except (ValueError, OSError, AttributeError):
        return None


def _processor() -> str | None:
    import platform

    return platform.processor() or platform.machine() or None
