"""Requirements against the env: Python, torch and its CUDA/ROCm build, pip pins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from registry.errors import StemSepError
from registry.settings import is_torch_requirement
from envmgr.preflight.rules.codes import Finding, from_error

if TYPE_CHECKING:
    from registry.view import ModelView


@dataclass(frozen=True)
class PipFacts:
    requirement: str
    installed: Optional[str] = None  # version found (env) or locked (lock)
    seen_in: Optional[str] = None  # env: probed with the env's interpreter | lock: would be installed | None


@dataclass(frozen=True)
class EnvFacts:
    state: str  # ready | needs_build | broken | unresolvable | no_interpreter | unknown | invalid | store | not_checked
    # | adopted (an env the user has: envmgr/envs/adopted.py; checked as it is, fixed by the user)
    env_id: Optional[str] = None
    path: Optional[str] = None
    problem: Optional[str] = None
    error: Optional[StemSepError] = None  # what stopped the request or the resolution
    python_spec: Optional[str] = None  # the env request's range (runtime's and model's)
    python: Optional[str] = None  # the env's Python, or the interpreter it would get
    python_seen_in: Optional[str] = None  # env | interpreter
    torch_spec: Optional[str] = None  # None: this env has no torch
    torch: Optional[str] = None  # the env's torch version, or the lock's
    torch_seen_in: Optional[str] = None  # env | lock
    torch_build: Optional[Mapping[str, Any]] = None  # {"cuda", "hip"} of a built env
    torch_variant_problems: tuple[str, ...] = ()  # envmgr.envs.torch_variant's verdict on a built env
    torch_backend: str = "auto"
    overrides: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    torch_cap_lifted: Optional[str] = None
    pip: tuple[PipFacts, ...] = ()
    # Only where the model's architecture imports torchvision on this runtime (registry/capabilities.py):
    torchvision: Optional[str] = None  # the env's (or the lock's) torchvision version; None: none or not asked
    torchvision_torch: Optional[str] = None  # the torch range its metadata declares (a built env only)
    # Likewise torchaudio, where the architecture imports it on this runtime:
    torchaudio: Optional[str] = None
    torchaudio_torch: Optional[str] = None
    nvidia: bool = False
    rocm: bool = False
    # An adopted env: {name, python, fingerprint (now; None: not answered), adopted_fingerprint, changes}
    adopted: Optional[Mapping[str, Any]] = None

    def fix(self, requirement: str) -> Optional[str]:
        """The command that installs `requirement` into an adopted env (the user runs it); None: a managed env."""
        return f"{self.adopted['python']} -m pip install '{requirement}'" if self.adopted else None


def check_env(entry: ModelView, runtime: str, env: EnvFacts) -> tuple[list[Finding], dict[str, Any]]:
    findings: list[Finding] = []
    if env.state == "needs_build":
        findings.append(Finding("W_ENV_NEEDS_BUILD", f"the {runtime} env for {entry.id} does not exist yet; it is "
                                "built before the job starts", f"env {env.env_id}",
                                "build it ahead of time with `stemsep setup`", subject=env.env_id))
    elif env.state == "broken":
        findings.append(Finding("W_ENV_BROKEN", f"the {runtime} env {env.env_id} is broken; it is rebuilt (or, "
                                "where only files changed, repaired) before the job starts", env.problem or "",
                                "nothing to do; `stemsep env verify` says what changed, `stemsep env list` shows envs",
                                subject=env.env_id))
    elif env.state in ("unresolvable", "no_interpreter", "unknown", "invalid", "store") and env.error is not None:
        code = {"unresolvable": "E_ENV_UNRESOLVABLE", "no_interpreter": "E_NO_INTERPRETER",
                "unknown": "E_ENV_RESOLVE", "invalid": "E_ENV_REQUEST", "store": "E_STORE"}[env.state]
        findings.append(from_error(env.error, code, subject=env.env_id))
    elif env.state == "adopted" and env.adopted and env.adopted["changes"]:
        changes = env.adopted["changes"]
        findings.append(Finding("W_ENV_CHANGED", f"the adopted env {env.adopted['name']} changed since it was "
                                f"adopted: {len(changes)} change(s)", "; ".join(changes),
                                "the checks below are of the env as it is now; `stemsep env adopt` again records "
                                "it as it is", subject=env.env_id))
    findings += _check_python(entry, env) + _check_torch(entry, runtime, env) + _check_companions(runtime, env)
    pip_rows, pip_findings = _check_pip(entry, env)
    findings += pip_findings
    status = {
        "env": {"id": env.env_id, "state": env.state, "path": env.path, "problem": env.problem,
                **({"adopted": dict(env.adopted)} if env.adopted else {})},
        "python": {"required": env.python_spec, "version": env.python, "seen_in": env.python_seen_in},
        "torch": None if env.torch_spec is None else {
            "required": env.torch_spec, "version": env.torch, "seen_in": env.torch_seen_in,
            "build": dict(env.torch_build) if env.torch_build else None, "backend": env.torch_backend,
            "variant": torch_variant(env), "overrides": [o for o in env.overrides if is_torch_requirement(o)],
            "notes": list(env.notes)},
        "pip": pip_rows,
    }
    return findings, status


def _contains(spec: str, version: Optional[str]) -> Optional[bool]:
    if not version or not spec:
        return None
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return None


def _check_python(entry: ModelView, env: EnvFacts) -> list[Finding]:
    if env.python_spec and _contains(env.python_spec, env.python) is False:
        where = "the env has" if env.python_seen_in == "env" else "the interpreter found is"
        return [Finding("E_PYTHON_MISMATCH", f"{entry.id} needs Python {env.python_spec}; {where} {env.python}",
                        hint="adopt an env with a Python in that range" if env.adopted else
                        "install a matching Python (uv python install) or set STEMSEP_PYTHON", subject="python")]
    return []


def torch_variant(env: EnvFacts) -> Optional[str]:
    """cpu | cuda | rocm for a built env (from torch's version file), else what the backend asks for."""
    if env.torch_build:
        if env.torch_build.get("hip"):
            return "rocm"
        return "cuda" if env.torch_build.get("cuda") else "cpu"
    local = None
    if env.torch:
        try:
            local = Version(env.torch).local
        except InvalidVersion:
            pass
    if local == "cpu" or env.torch_backend == "cpu":
        return "cpu"
    if (local or "").startswith("cu") or env.torch_backend.startswith("cu"):
        return "cuda"
    if (local or "").startswith("rocm") or env.torch_backend.startswith("rocm"):
        return "rocm"
    return None  # auto/none without a local label: decided at install time


def _check_torch(entry: ModelView, runtime: str, env: EnvFacts) -> list[Finding]:
    if env.torch_spec is None:
        return []
    findings = []
    model_spec = env.torch_spec[len("torch"):] if env.torch_spec.startswith("torch") else ""
    if model_spec and _contains(model_spec, env.torch) is False:
        findings.append(Finding("E_TORCH_MISMATCH", f"{entry.id} needs {env.torch_spec}; the env "
                                f"{'has' if env.torch_seen_in == 'env' else 'would get'} torch {env.torch}",
                                hint=env.fix(env.torch_spec) or "change the machine's torch override "
                                "(STEMSEP_OVERRIDES) or pick another model",
                                subject="torch"))
    for problem in env.torch_variant_problems:
        findings.append(Finding("E_TORCH_VARIANT", f"the {runtime} env's torch is not the requested build",
                                problem, "remove the env (`stemsep env rm`) so it is rebuilt with the configured "
                                "torch_backend/overrides", subject="torch"))
    torch_req = entry.requirements.torch
    backend = env.torch_backend
    for prefix, builds in (("cu", torch_req.cuda), ("rocm", torch_req.rocm)):
        if builds and backend.startswith(prefix) and backend not in builds:
            findings.append(Finding("E_TORCH_VARIANT", f"{entry.id} supports torch builds {', '.join(builds)}; "
                                    f"torch_backend is {backend}", hint=f"set STEMSEP_TORCH_BACKEND to one of "
                                    f"{', '.join(builds)}", subject="torch"))
    variant = torch_variant(env)
    if variant == "cuda" and not env.nvidia:
        findings.append(Finding("W_TORCH_NO_GPU", "the env gets a CUDA torch but this machine has no NVIDIA driver",
                                "the job runs on the CPU, much slower", "set STEMSEP_TORCH_BACKEND=cpu for a "
                                "smaller env", subject="torch"))
    elif variant == "rocm" and not env.rocm:
        findings.append(Finding("W_TORCH_NO_GPU", "the env gets a ROCm torch but this machine has no ROCm device",
                                "the job runs on the CPU, much slower", "set STEMSEP_TORCH_BACKEND=cpu",
                                subject="torch"))
    elif variant == "cpu" and env.nvidia:
        findings.append(Finding("W_TORCH_GPU_UNUSED", "this machine has an NVIDIA GPU but the env gets a CPU torch",
                                f"torch_backend is {backend}", "set STEMSEP_TORCH_BACKEND=auto (or cuXXX) to use "
                                "the GPU", subject="torch"))
    if env.torch_cap_lifted:
        findings.append(Finding("W_TORCH_OVERRIDE", f"{runtime}'s own torch cap is overridden in this env "
                                f"(torch {env.torch or 'from the override'})", env.torch_cap_lifted,
                                "if the job fails inside torch, report it with the versions shown", subject="torch"))
    return findings


def torchvision_fits(torchvision: str, torch: str, declared: Optional[str]) -> Optional[bool]:
    """Whether this torchvision was built for this torch: by its metadata's torch range when known, else by
    PyTorch's published pairing (torchvision 0.N goes with torch 2.(N-15) since 0.15 / 2.0). None: unknown."""
    if declared:
        return _contains(declared, torch)
    try:
        vision, base = Version(torchvision), Version(torch)
    except InvalidVersion:
        return None
    if vision.major != 0 or vision.minor < 15 or base.major != 2:
        return None
    return base.minor == vision.minor - 15


def torchaudio_fits(torchaudio: str, torch: str, declared: Optional[str]) -> Optional[bool]:
    """Whether this torchaudio was built for this torch. Its native library links one torch release and build:
    the same major.minor (torchaudio 2.N goes with torch 2.N since 2.0) and the same local build label (+cpu,
    +cu128, none for PyPI's: a CPU torch cannot load a CUDA build's library), inside its metadata's torch range
    when known (a loose range does not prove a fit). None: unknown."""
    if declared and _contains(declared, torch) is False:
        return False
    try:
        audio, base = Version(torchaudio), Version(torch)
    except InvalidVersion:
        return None
    if audio.major < 2 or base.major < 2:
        return None
    return audio.release[:2] == base.release[:2] and audio.local == base.local


# torch's companion libraries whose native code is built for one torch, where an architecture imports them:
# (name, verdict, which path imports it on its runtime, how the mismatch fails)
_COMPANIONS = (
    ("torchvision", torchvision_fits, "audio-separator's MDX-Net path: onnx2torch imports it",
     "\"operator torchvision::nms does not exist\""),
    ("torchaudio", torchaudio_fits, "msst's htdemucs (through openunmix) and bandit import it",
     "\"Could not load this library: .../_torchaudio.so\""),
)


def _check_companions(runtime: str, env: EnvFacts) -> list[Finding]:
    findings = []
    for name, fits, path, failure in _COMPANIONS:
        version, declared = getattr(env, name), getattr(env, f"{name}_torch")
        if not version or not env.torch or fits(version, env.torch, declared) is not False:
            continue
        where = "has" if env.torch_seen_in == "env" else "would get"
        built_for = f"torch{declared}" if declared else "another torch"
        findings.append(Finding(
            f"E_{name.upper()}_MISMATCH", f"the {runtime} env {where} {name} {version}, built for {built_for}, "
            f"beside torch {env.torch}",
            why=f"this model's architecture imports {name} on this runtime ({path}), and a {name} built for "
            f"another torch fails to load ({failure}); the machine's torch override "
            f"({', '.join(o for o in env.overrides if is_torch_requirement(o)) or 'none'}) fixes torch but "
            f"not {name}",
            hint=f"add a {name} wheel built for that torch to the find-links dir (STEMSEP_FIND_LINKS) "
            "and override it too (STEMSEP_OVERRIDES), or drop the torch override", subject=name))
    return findings


def _check_pip(entry: ModelView, env: EnvFacts) -> tuple[list[dict[str, Any]], list[Finding]]:
    rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    if not env.pip:
        return rows, findings
    from packaging.requirements import Requirement  # here: only models with pip pins parse one

    for p in env.pip:
        spec = str(Requirement(p.requirement).specifier)
        # an adopted env's fix is the user's to run: named in `why` too, which a blocked job's error lists
        how = (f"listed by the env's own pip through pip-api; the fix: {env.fix(p.requirement)}" if env.adopted
               else "probed with the env's own interpreter")
        if p.seen_in == "env":
            if p.installed is None:
                state = "missing"
                findings.append(Finding("E_PIP_MISSING", f"{p.requirement} is not installed in the env {env.env_id}",
                                        how, env.fix(p.requirement) or "remove the env (`stemsep env rm "
                                        f"{env.env_id}`) so it is rebuilt", subject=p.requirement))
            elif spec and _contains(spec, p.installed) is False:
                state = "wrong_version"
                findings.append(Finding("E_PIP_VERSION", f"the env {env.env_id} has {p.installed} of {p.requirement}",
                                        how, env.fix(p.requirement) or f"remove the env (`stemsep env rm "
                                        f"{env.env_id}`) so it is rebuilt", subject=p.requirement))
            else:
                state = "satisfied"
        else:
            state = "to_install"
        rows.append({"requirement": p.requirement, "state": state, "version": p.installed, "seen_in": p.seen_in,
                     **({"fix": env.fix(p.requirement)} if env.adopted and state != "satisfied" else {})})
    return rows, findings


def check_system_libraries(entry: ModelView, runtime: str, found: Mapping[str, bool]) -> list[Finding]:
    """E_SYSTEM_LIBRARY_MISSING for each system library the runtime loads for this model and `found` lacks."""
    from registry.capabilities import system_libraries

    return [Finding("E_SYSTEM_LIBRARY_MISSING", f"{runtime} needs the system library {lib.name} for "
                    f"{entry.id}, and this machine has none", why=lib.why, hint=lib.install, subject=lib.name)
            for lib in system_libraries(entry, runtime) if not found.get(lib.name, True)]
