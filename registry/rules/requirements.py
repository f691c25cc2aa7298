"""Requirements (seed §3.3): version ranges, pip requirements, runtime pins, manual steps."""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from registry import pep508
from registry.rules.base import Hit, ModelContext, model_rule
from registry.settings import exact_pin_version
from registry.vocab import RUNTIME_LIBRARIES

CUDA_TAG = re.compile(r"^cu\d{2,3}$")  # cu118, cu121, cu128
ROCM_TAG = re.compile(r"^rocm\d+(\.\d+){0,2}$")  # rocm6.2, rocm6.2.4


def _version(text):
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _valid_versions(block, base):
    for key in ("min", "max"):
        text = getattr(block, key)
        if text is not None and _version(text) is None:
            yield Hit(base + (key,), f"{text!r} is not a PEP 440 version")


def _ordered(block, base):
    low, high = (_version(block.min) if block.min else None), (_version(block.max) if block.max else None)
    if low is not None and high is not None and low > high:
        yield Hit(base + ("min",), f"min {block.min} is above max {block.max}")


@model_rule("python-version-valid", summary="requirements.python min/max are PEP 440 versions",
            hint="write versions like 3.10 or 3.12.4")
def python_valid(entry, ctx: ModelContext):
    yield from _valid_versions(entry.requirements.python, ("requirements", "python"))


@model_rule("python-range-order", summary="requirements.python min <= max", hint="swap or correct min and max")
def python_order(entry, ctx: ModelContext):
    yield from _ordered(entry.requirements.python, ("requirements", "python"))


@model_rule("torch-version-valid", summary="requirements.torch min/max are PEP 440 versions",
            hint="write versions like 2.3.0")
def torch_valid(entry, ctx: ModelContext):
    yield from _valid_versions(entry.requirements.torch, ("requirements", "torch"))


@model_rule("torch-range-order", summary="requirements.torch min <= max", hint="swap or correct min and max")
def torch_order(entry, ctx: ModelContext):
    yield from _ordered(entry.requirements.torch, ("requirements", "torch"))


@model_rule("torch-cuda-tag", summary="requirements.torch.cuda holds tags like cu121",
            hint="write CUDA builds as uv/PyTorch index tags: cu118, cu121, cu128")
def cuda_tags(entry, ctx: ModelContext):
    for i, tag in enumerate(entry.requirements.torch.cuda):
        if not CUDA_TAG.match(tag):
            yield Hit(("requirements", "torch", "cuda", i), f"{tag!r} is not a CUDA tag (cuXXX)")


@model_rule("torch-rocm-tag", summary="requirements.torch.rocm holds tags like rocm6.2",
            hint="write ROCm builds as PyTorch index tags: rocm6.1, rocm6.2.4")
def rocm_tags(entry, ctx: ModelContext):
    for i, tag in enumerate(entry.requirements.torch.rocm):
        if not ROCM_TAG.match(tag):
            yield Hit(("requirements", "torch", "rocm", i), f"{tag!r} is not a ROCm tag (rocmX.Y)")


@model_rule("torch-required-runtime", summary="torch.required false only for models that run without torch",
            hint="audio-separator and msst always import torch: set requirements.torch.required to true or null, "
                 "or allow only stemsep-legacy")
def torch_required(entry, ctx: ModelContext):
    needs_torch = [r for r in entry.runtime.allowed if r in ("audio-separator", "msst")]
    if entry.requirements.torch.required is False and needs_torch:
        yield Hit(("requirements", "torch", "required"), f"torch.required is false but {', '.join(needs_torch)} "
                  "always needs torch")


def _requirement(text):
    return pep508.parse(text)


@model_rule("pip-requirement-valid", summary="requirements.pip.packages are PEP 508 requirements",
            hint="write requirements as pip understands them, e.g. neuraloperator==1.0.2")
def pip_valid(entry, ctx: ModelContext):
    for i, text in enumerate(entry.requirements.pip.packages):
        if _requirement(text) is None:
            yield Hit(("requirements", "pip", "packages", i), f"{text!r} is not a PEP 508 requirement")


@model_rule("pip-requirement-duplicate", summary="each package appears once in requirements.pip.packages",
            hint="merge the two requirements into one (combine their version specifiers)")
def pip_duplicate(entry, ctx: ModelContext):
    seen: dict[str, int] = {}
    for i, text in enumerate(entry.requirements.pip.packages):
        req = _requirement(text)
        if req is None:
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            yield Hit(("requirements", "pip", "packages", i), f"{req.name} is already required at index {seen[name]}")
        else:
            seen[name] = i


@model_rule("runtime-pin-valid", summary="requirements.runtime_pins pin the runtime's own library",
            hint="pin the runtime's library as PEP 508, e.g. audio-separator==0.47.1 or msst[bs-roformer]==0.1.0; "
                 "stemsep-legacy is our own code and takes no pin")
def runtime_pin_valid(entry, ctx: ModelContext):
    for runtime, pin in entry.requirements.runtime_pins.items():
        path = ("requirements", "runtime_pins", runtime)
        library = RUNTIME_LIBRARIES.get(runtime)
        req = _requirement(pin)
        if library is None:
            yield Hit(path, f"{runtime} has no library to pin")
        elif req is None:
            yield Hit(path, f"{pin!r} is not a PEP 508 requirement")
        elif canonicalize_name(req.name) != canonicalize_name(library):
            yield Hit(path, f"{pin!r} pins {req.name}, not {library}")


@model_rule("runtime-pin-exact", summary="runtime pins name one exact version", strict_only=True,
            hint="pin with ==, e.g. audio-separator==0.47.1: settings semantics depend on the exact version")
def runtime_pin_exact(entry, ctx: ModelContext):
    for runtime, pin in entry.requirements.runtime_pins.items():
        if RUNTIME_LIBRARIES.get(runtime) and _requirement(pin) and exact_pin_version(pin) is None:
            yield Hit(("requirements", "runtime_pins", runtime), f"{pin!r} is not a single exact version")


@model_rule("runtime-pin-allowed", summary="runtime pins only for allowed runtimes", severity="warning",
            hint="drop the pin, or add the runtime to runtime.allowed")
def runtime_pin_allowed(entry, ctx: ModelContext):
    for runtime in entry.requirements.runtime_pins:
        if runtime not in entry.runtime.allowed:
            yield Hit(("requirements", "runtime_pins", runtime), f"{runtime} is pinned but not allowed")


@model_rule("manual-step-automated-by", summary="a manual step's automated_by names one of the model's artifacts",
            hint="set automated_by to the filename of the model's code artifact that performs the step")
def manual_step_automated(entry, ctx: ModelContext):
    filenames = {a.filename for a in entry.artifacts.all()}
    for i, step in enumerate(entry.requirements.manual_steps):
        automated_by = getattr(step, "automated_by", None)
        if automated_by is not None and automated_by not in filenames:
            yield Hit(("requirements", "manual_steps", i, "automated_by"),
                      f"{automated_by!r} is not an artifact of this model")
