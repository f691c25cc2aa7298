"""`stemsep doctor`: what this machine has and lacks for StemSep, one `Check` per subject.

Needed (a failed needed check makes doctor exit 1):
- the machine config loads, and the registry loads;
- uv: StemSep's resolver. Without it no new lock can be made, whatever `use_uv` says (use_uv = false only
  swaps the installer for virtualenv + pip, which then must be importable);
- a Python interpreter for at least one runtime's range (runtimes without one are warned about);
- every state dir writable, or creatable where it does not exist yet;
- ffmpeg for every audio-separator env in the store: the one its worker finds, i.e. imageio-ffmpeg's bundled
  binary, else an `ffmpeg` on the PATH the worker inherits (what imageio_ffmpeg.get_ffmpeg_exe() returns,
  asked in the env with the worker's environment). No audio-separator env: ffmpeg is not needed (StemSep
  decodes with libsndfile, and a new audio-separator env brings imageio-ffmpeg); a system one is reported.
Reported, never needed: free disk, GPUs and the torch backends they allow, the config in effect, broken and
stale envs (and, with `verify`, damaged ones).

Nothing here imports torch or numpy; the only processes are uv, interpreters being asked what they are,
nvidia-smi, ffmpeg -version and the ffmpeg probe inside audio-separator envs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.store import EnvRecord
    from registry.loader import Registry

LOW_DISK = 5 * 1024**3  # a torch env plus its share of uv's cache takes a few GiB
STATE_DIRS = ("env_store", "cache_dir", "uv_cache_dir", "model_store", "log_dir", "state_dir")
_FFMPEG_PROBE = "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"  # what the adapter calls


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | info
    summary: str
    needed: bool = False  # a `fail` of a needed check makes doctor exit 1
    details: list[str] = field(default_factory=list)
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def missing(self) -> bool:
        return self.needed and self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "needed": self.needed,
                "missing": self.missing, "details": self.details, "hint": self.hint, "data": self.data}


def _failed(name: str, err: StemSepError, *, needed: bool) -> Check:
    return Check(name, "fail", err.message, needed=needed, details=[err.why] if err.why else [], hint=err.hint,
                 data={"code": err.code})


def _guarded(name: str, needed: bool, make: Callable[[], Check]) -> Check:
    try:
        return make()
    except StemSepError as err:  # a check that cannot finish reports why; the other checks still run
        return _failed(name, err, needed=needed)


def diagnose(*, verify: bool = False) -> list[Check]:
    from envmgr.config import load_config

    try:
        config = load_config()
    except StemSepError as err:
        return [_failed("config", err, needed=True)]
    registry: list[Registry] = []

    def registry_check() -> Check:
        from envmgr.catalog.registry_files import load

        registry.append(load())
        return _registry(registry[0])

    checks = [_config(config), _guarded("registry", True, registry_check),
              _guarded("uv", True, lambda: _uv(config)), _guarded("python", True, lambda: _pythons(config)),
              _state_dirs(config), _guarded("disk", False, lambda: _disk(config)), _gpu(config)]
    from envmgr.envs.manager import EnvManager

    manager = EnvManager(config)
    records = manager.store.records()
    checks.append(_guarded("ffmpeg", True, lambda: _ffmpeg(config, records)))
    checks.append(_guarded("envs", False, lambda: _envs(manager, records, registry[0] if registry else None,
                                                         verify)))
    return checks


# -- config and registry -------------------------------------------------------------------------------

def _config(config: MachineConfig) -> Check:
    from envmgr.config import KEYS

    from envmgr.diagnostics.scrub import Scrubber

    values = Scrubber().data(config.as_dict())  # index URLs may carry tokens: doctor's output gets pasted into issues
    changed = [f"{k} = {values[k]} ({config.sources[k]})" for k in KEYS if config.sources[k] != "default"]
    where = f"{config.config_file}{'' if config.config_file.exists() else ' (absent)'}"
    return Check("config", "info", f"{len(changed)} key(s) set; file {where}", details=changed,
                 hint="`stemsep env config` shows every key and where it came from",
                 data={"file": str(config.config_file), "home": str(config.home) if config.home else None,
                       "values": values, "sources": config.sources})


def _registry(registry: Registry) -> Check:
    broken = [b.warning() for b in registry.broken]
    return Check("registry", "warn" if broken else "ok",
                 f"{len(registry)} models; default {registry.default_model or '-'}", needed=True, details=broken,
                 hint="fix or remove the user registry files named above" if broken else None,
                 data={"models": len(registry), "default_model": registry.default_model, "broken_overlays": broken})


# -- tools -------------------------------------------------------------------------------------------

def _uv(config: MachineConfig) -> Check:
    from importlib.util import find_spec

    from envmgr.envs.uvtool import find_uv, run

    uv_bin = find_uv(replace(config, use_uv=True))
    if uv_bin is None:
        return Check("uv", "fail", "uv is not installed", needed=True,
                     details=["uv resolves every env's lock; without it no new env can be made"],
                     hint="reinstall stemsep (uv is one of its dependencies) or `pip install uv`")
    proc = run([uv_bin, "--version"], timeout=30)
    version = proc.stdout.strip() or proc.stderr.strip()
    data = {"path": uv_bin, "version": version, "use_uv": config.use_uv}
    if config.use_uv:
        return Check("uv", "ok", f"{version} ({uv_bin})", needed=True, data=data)
    if find_spec("virtualenv") is None:
        return Check("uv", "fail", f"use_uv = false but virtualenv is not installed ({version} resolves)",
                     needed=True, hint="`pip install virtualenv`, or `stemsep env config unset use_uv`", data=data)
    return Check("uv", "warn", f"{version}; use_uv = false: envs are installed with virtualenv + pip and only "
                 "locks already cached can be used", needed=True, data=data,
                 hint="`stemsep env config unset use_uv` lets uv resolve and install again")


def _pythons(config: MachineConfig) -> Check:
    from envmgr.envs.interpreters import discovered, find_interpreter
    from envmgr.envs.runtime_defs import RUNTIMES
    from envmgr.errors import NoInterpreterError

    runtimes: dict[str, dict[str, Any]] = {}
    for rid, rdef in RUNTIMES.items():
        try:
            runtimes[rid] = {"range": rdef.python, "interpreter": find_interpreter(rdef.python, config).describe()}
        except NoInterpreterError as err:
            runtimes[rid] = {"range": rdef.python, "interpreter": None, "error": err.message}
    found = discovered(config)
    lacking = [rid for rid, r in runtimes.items() if r["interpreter"] is None]
    details = [f"{rid} ({r['range'] or 'any'}): {r['interpreter'] or 'none'}" for rid, r in runtimes.items()]
    details += [f"found: {f}" for f in found]
    status = "fail" if len(lacking) == len(runtimes) else "warn" if lacking else "ok"
    summary = (f"new envs get: {runtimes[next(iter(runtimes))]['interpreter'] or 'none'}" if status == "ok" else
               f"no Python for {', '.join(lacking)}")
    return Check("python", status, summary, needed=True, details=details,
                 hint="install a Python in that range (e.g. `uv python install 3.11`) or list it in python_paths"
                 if lacking else None,
                 data={"preferred": config.python, "runtimes": runtimes, "found": found})


def _state_dirs(config: MachineConfig) -> Check:
    from envmgr.fsutil import check_creatable

    problems, hints, dirs = [], [], {}
    for key in STATE_DIRS:
        path = getattr(config, key)
        dirs[key] = str(path)
        try:
            check_creatable(path)
        except StemSepError as err:
            problems.append(f"{key} {path}: {err.why}")
            hints.append(err.hint)
    if problems:
        return Check("state dirs", "fail", f"{len(problems)} of {len(STATE_DIRS)} cannot be written", needed=True,
                     details=problems, hint=hints[0], data={"dirs": dirs})
    return Check("state dirs", "ok", f"all {len(STATE_DIRS)} writable (home: {config.home or 'platform dirs'})",
                 needed=True, data={"dirs": dirs})


def _disk(config: MachineConfig) -> Check:
    from envmgr.fsutil import nearest_existing
    from envmgr.sizes import human

    stores = {"env store": config.env_store, "uv cache": config.uv_cache_dir, "model store": config.model_store}
    data: dict[str, dict[str, Any]] = {}
    details: list[str] = []
    low: list[str] = []
    devices: dict[str, int] = {}
    for label, path in stores.items():
        anchor = nearest_existing(path)
        free = shutil.disk_usage(anchor).free
        devices[label] = os.stat(anchor).st_dev
        data[label.replace(" ", "_")] = {"path": str(path), "free_bytes": free}
        details.append(f"{label}: {human(free)} free ({path})")
        if free < LOW_DISK:
            low.append(label)
    status, hint = "ok", None
    if low:
        status, hint = "warn", f"under {human(LOW_DISK)} free for {', '.join(low)}: a torch env needs a few GiB"
    if devices["env store"] != devices["uv cache"] and config.link_mode == "hardlink":
        status = "warn"
        details.append("the uv cache is on another filesystem than the env store: envs copy their files instead "
                       "of hardlinking them (more disk, slower builds)")
        hint = hint or "put uv_cache_dir on the env store's filesystem (`stemsep env config set uv_cache_dir DIR`)"
    by_device: dict[int, list[str]] = {}
    for label, device in devices.items():
        by_device.setdefault(device, []).append(label)
    summary = "; ".join(f"{human(data[labels[0].replace(' ', '_')]['free_bytes'])} free for {', '.join(labels)}"
                        for labels in by_device.values())
    return Check("disk", status, summary, details=details, hint=hint, data=data)


def _gpu(config: MachineConfig) -> Check:
    from envmgr.envs.torch_variant import detect_nvidia

    import platform

    nvidia = detect_nvidia()
    driver = _nvidia_driver()
    gpus = _nvidia_smi()
    rocm = os.path.exists("/dev/kfd")
    backends = (["cuda"] if nvidia else []) + (["rocm"] if rocm else [])
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        backends.append("mps")
    details = [f"NVIDIA driver {driver or '?'}" if nvidia else "no NVIDIA driver (/proc/driver/nvidia)"]
    details += [f"GPU: {g}" for g in gpus]
    details.append(f"ROCm: /dev/kfd present{_rocm_version()}" if rocm else "no ROCm (/dev/kfd)")
    backend = config.torch_backend
    status, hint = "info", None
    if gpus and not nvidia:
        status, hint = "warn", ("nvidia-smi sees GPUs but the driver is not in /proc/driver/nvidia (WSL?): uv's auto "
                                "backend and preflight will not see them; set torch_backend (e.g. cu128)")
    if backend.startswith("cu") and not nvidia:
        status, hint = "warn", f"torch_backend {backend} asks for CUDA builds but no NVIDIA driver is loaded"
    if backend.startswith("rocm") and not rocm:
        status, hint = "warn", f"torch_backend {backend} asks for ROCm builds but /dev/kfd is absent"
    summary = (", ".join(backends) + " + cpu" if backends else "none: CPU only") + f"; torch_backend = {backend}"
    return Check("gpu", status, summary, details=details, hint=hint,
                 data={"backends": backends, "nvidia_driver": driver if nvidia else None, "gpus": gpus,
                       "rocm": rocm, "torch_backend": backend})


def _nvidia_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def _nvidia_smi() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        proc = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def _rocm_version() -> str:
    try:
        return f", ROCm {Path('/opt/rocm/.info/version').read_text().strip()}"
    except OSError:
        return ""


def _ffmpeg(config: MachineConfig, records: list[EnvRecord]) -> Check:
    from envmgr.envs.health import quick_check

    system = shutil.which("ffmpeg")
    system_text = f"system ffmpeg: {system} ({_ffmpeg_version(system)})" if system else "no ffmpeg on PATH"
    envs = [r for r in records if r.runtime == "audio-separator" and quick_check(r.path) is None]
    if not envs:
        return Check("ffmpeg", "ok" if system else "info",
                     f"not needed now (no audio-separator env); {system_text}", needed=True,
                     details=["audio-separator envs bring their own (imageio-ffmpeg); StemSep decodes with "
                              "libsndfile"], data={"system": system, "envs": {}})
    from envmgr.worker.code_copy import ensure_worker_code

    code = ensure_worker_code(config.cache_dir)
    found = {r.id: _ffmpeg_in_env(r, code.root) for r in envs}
    lacking = [env_id for env_id, f in found.items() if f["path"] is None]
    details = [f"{env_id}: {f['path']} ({f['source']})" if f["path"] else f"{env_id}: none ({f['error']})"
               for env_id, f in found.items()] + [system_text]
    data = {"system": system, "envs": found}
    if lacking:
        return Check("ffmpeg", "fail", f"missing for {len(lacking)} audio-separator env(s)", needed=True,
                     details=details, data=data,
                     hint=f"`stemsep env repair {lacking[0]}` restores imageio-ffmpeg's binary; or install ffmpeg "
                     "on PATH (e.g. `apt install ffmpeg`)")
    return Check("ffmpeg", "ok", f"found for {len(envs)} audio-separator env(s)", needed=True, details=details,
                 data=data)


def _ffmpeg_in_env(record: EnvRecord, code_root: Path) -> dict[str, Any]:
    """The ffmpeg an audio-separator worker in this env would use, asked in the env with the worker's environment."""
    from envmgr.envs.health import env_python
    from envmgr.worker.process import worker_env

    environ = worker_env(code_root)
    try:
        proc = subprocess.run([str(env_python(record.path)), "-s", "-c", _FFMPEG_PROBE], capture_output=True,
                              text=True, timeout=60, cwd=code_root, env=environ)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": None, "source": None, "error": str(exc)}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"path": None, "source": None, "error": lines[-1] if lines else f"exit {proc.returncode}"}
    exe = proc.stdout.strip().splitlines()[-1]
    if os.sep not in exe:  # imageio-ffmpeg names a PATH fallback by its bare name
        exe = shutil.which(exe, path=environ.get("PATH")) or exe
    bundled = Path(os.path.realpath(exe)).is_relative_to(os.path.realpath(record.path))
    return {"path": exe, "source": "bundled with imageio-ffmpeg" if bundled else "system, from PATH", "error": None}


def _ffmpeg_version(exe: str) -> str:
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    first = (proc.stdout.splitlines() or ["?"])[0]
    return first if proc.returncode == 0 else f"exits {proc.returncode}"


# -- envs --------------------------------------------------------------------------------------------

def _envs(manager: EnvManager, records: list[EnvRecord], registry: Registry | None, verify: bool) -> Check:
    rows, details = [], []
    for record in records:
        row: dict[str, Any] = {"id": record.id, "runtime": record.runtime, "state": record.state,
                               "problem": record.problem, "models": record.models, "stale": None, "damaged": None}
        if record.state != "ready":
            details.append(f"{record.id}: broken: {record.problem}")
        else:
            row["stale"] = stale_reason(manager, record, registry) if registry is not None else None
            if row["stale"]:
                details.append(f"{record.id}: stale: {row['stale']}")
            if verify:
                result = manager.verify(record.id)
                if not result.ok:
                    row["damaged"] = result.summary()
                    details.append(f"{record.id}: damaged: {row['damaged']}")
        rows.append(row)
    counts = {k: sum(1 for r in rows if pred(r)) for k, pred in (
        ("broken", lambda r: r["state"] != "ready"), ("stale", lambda r: r["stale"]),
        ("damaged", lambda r: r["damaged"]))}
    summary = f"{len(rows)} in {manager.config.env_store}" + "".join(
        f", {n} {k}" for k, n in counts.items() if n) + ("" if verify else " (files not verified: --verify)")
    hints = []
    if counts["broken"]:
        hints.append("`stemsep env prune` removes broken envs (a model's is rebuilt on its next run)")
    if counts["stale"]:
        hints.append("`stemsep env rm ID` removes a stale env (`env prune --older-than DAYS` unused ones)")
    if counts["damaged"]:
        hints.append("`stemsep env repair ID` reinstalls damaged packages")
    return Check("envs", "warn" if any(counts.values()) else "ok", summary, details=details,
                 hint="; ".join(hints) or None, data={"store": str(manager.config.env_store), "envs": rows})


def stale_reason(manager: EnvManager, record: EnvRecord, registry: Registry) -> str | None:
    """Why no model would use this ready env now (every model it served left the registry, no longer runs on its
    runtime, or resolves to another env by its cached lock), or None. A model whose new request has no lock
    cached yet is not judged: the env may still be its env."""
    from envmgr.envs.manager import env_id_for
    from envmgr.envs.request import request_for_model
    from registry.routing import choose_runtime

    if not record.models:
        return None
    moved = []
    for model_id in record.models:
        if model_id not in registry:
            moved.append(f"{model_id} is no longer in the registry")
            continue
        entry = registry.view(model_id)
        try:
            choose_runtime(entry, record.runtime)
        except StemSepError as err:
            moved.append(f"{model_id}: {err.message}")
            continue
        try:
            lock = manager.cached_lock(request_for_model(entry, record.runtime, manager.config))
        except StemSepError:
            lock = None  # no interpreter, a bad pin...: what its env would be is unknown
        if lock is None:
            return None
        other = env_id_for(record.runtime, lock)
        if other == record.id:
            return None
        moved.append(f"{model_id} now uses {other}")
    return "; ".join(moved)
