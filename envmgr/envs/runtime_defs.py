"""What each canonical runtime needs in its env: pinned library, torch, health-check modules, Python range.

This is the one place that knows the runtime libraries' packaging; what each can run (its capability facts)
lives in registry/capabilities.py, where the validator can read it, and is reached here as `.capabilities`. Facts from their wheels' metadata:
- audio-separator 0.47.1: extras `cpu` (onnxruntime) and `gpu` (onnxruntime-gpu, CUDA); declares torch
  itself; shells out to `ffmpeg`, which `imageio-ffmpeg` ships inside the env.
- msst 0.1.0: Requires-Python <3.14; BS-/Mel-Roformer code needs the `bs-roformer` and `mel-band-roformer`
  extras (beartype, einops, rotary-embedding-torch, PoPE-pytorch); declares `torch<2.12,>=2.0.1` but runs
  on newer torch, so its env overrides that cap.
- stemsep-legacy: our own code; light models need numpy + soundfile, our BS-/Mel-Roformer torch >= 2.4
  (F.rms_norm) and pyyaml (MSST configs) as well — nothing else (no einops, rotary-embedding-torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.capabilities import CAPABILITIES, RuntimeCapabilities


@dataclass(frozen=True)
class Override:
    """A requirement that replaces every other requirement on the same package, and why."""

    requirement: str
    reason: str


@dataclass(frozen=True)
class RuntimeDef:
    id: str
    library: str | None  # the pinned runtime library (distribution name), None for our own code
    pin: str | None  # default PEP 508 pin of the library; a model's `requirements.runtime_pins` replaces it
    python: str  # supported interpreter range (PEP 440 specifier set)
    requires: tuple[str, ...] = ()  # further base requirements
    torch: bool | None = True  # True: always torch; None: the model decides (requirements.torch.required)
    torch_requires: tuple[str, ...] = ()  # added when the env has torch
    torch_floor: str | None = None  # lowest torch the runtime's own code runs on; a model's higher min wins
    # Checked inside the env after a build: the first (the runtime module) is imported, the rest must be
    # findable (importing numpy/torch stacks would double a warm build; the worker imports them anyway).
    health_modules: tuple[str, ...] = ()
    torch_health_modules: tuple[str, ...] = ()  # checked as well when the env has torch
    # checked as well when the library requirement carries the extra: an extra's modules are absent without it
    extra_health_modules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    torch_cap_lifted: str | None = None  # why the library's own torch cap is overridden, if it is

    @property
    def capabilities(self) -> RuntimeCapabilities:
        """What this runtime version can run: architectures, model types, files, channel layouts, config keys
        (registry/capabilities.py: the validator, routing and preflight read the same facts)."""
        return CAPABILITIES[self.id]

    def needs_torch(self, model_torch_required: bool | None) -> bool:
        if self.torch is True:
            return True
        return model_torch_required is not False

    def library_requirement(self, torch_backend: str, runtime_pin: str | None = None) -> str | None:
        """The library pin for this env: the model's runtime pin if given, with our extras for the backend."""
        if self.pin is None:
            return None
        from packaging.requirements import Requirement  # here: the light env's start parses no requirement

        base = Requirement(self.pin)
        if runtime_pin:
            req = Requirement(runtime_pin)
            if not req.extras:
                req.extras = set(base.extras)
        else:
            req = base
        if self.id == "audio-separator":  # onnxruntime flavour follows the torch backend
            req.extras = (set(req.extras) - {"cpu", "gpu"}) | {_onnx_flavour(torch_backend)}
        return str(req)

    def health_imports(self, with_torch: bool, library: str | None = None) -> tuple[str, ...]:
        """What the health check imports for an env with (or without) torch and this library requirement.
        torch itself is never imported by the health check (it takes seconds); its version file is read
        instead, and the worker's `ready` handshake imports it for real."""
        modules = list(self.health_modules + (self.torch_health_modules if with_torch else ()))
        if library and self.extra_health_modules:
            from packaging.requirements import Requirement

            extras = Requirement(library).extras
            for extra, needed in self.extra_health_modules:
                if extra in extras:
                    modules += [m for m in needed if m not in modules]
        return tuple(modules)


def _onnx_flavour(torch_backend: str) -> str:
    if torch_backend.startswith("cu"):
        return "gpu"
    if torch_backend == "auto":
        from envmgr.envs.torch_variant import detect_nvidia

        return "gpu" if detect_nvidia() else "cpu"
    return "cpu"


# Libraries the stemsep-legacy neural models (our BS/Mel-Roformer) import besides torch and numpy: pyyaml for
# their configs, soxr to resample inputs at other rates (streaming, runtimes/resample.py).
LEGACY_TORCH_LIBS: tuple[str, ...] = ("pyyaml", "soxr")

RUNTIMES: dict[str, RuntimeDef] = {r.id: r for r in (
    RuntimeDef(
        id="audio-separator",
        library="audio-separator",
        pin="audio-separator[cpu]==0.47.1",
        python=">=3.10,!=3.14.1",
        requires=("imageio-ffmpeg",),
        torch=True,
        health_modules=("audio_separator", "imageio_ffmpeg", "onnxruntime"),
    ),
    RuntimeDef(
        id="msst",
        library="msst",
        pin="msst[bs-roformer,mel-band-roformer]==0.1.0",
        python=">=3.10,<3.14",
        torch=True,
        health_modules=("msst",),
        # the Roformer code's own libraries; msst[apollo], [htdemucs], [bandit] or plain msst install neither
        extra_health_modules=(("bs-roformer", ("einops", "rotary_embedding_torch")),
                              ("mel-band-roformer", ("einops", "rotary_embedding_torch"))),
        torch_cap_lifted="msst 0.1.0 declares torch<2.12,>=2.0.1 but runs on newer torch (measured on 2.13); "
        "the cap is overridden so msst shares torch with the other runtimes",
    ),
    RuntimeDef(
        id="stemsep-legacy",
        library=None,
        pin=None,
        python=">=3.10",
        requires=("numpy", "soundfile"),
        torch=None,
        torch_requires=LEGACY_TORCH_LIBS,
        torch_floor="2.4",  # torch.nn.functional.rms_norm
        health_modules=("soundfile", "numpy"),  # soundfile loads libsndfile: the part most likely to break
        torch_health_modules=("yaml", "soxr"),
    ),
)}
