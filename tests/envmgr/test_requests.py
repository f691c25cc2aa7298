"""From a registry entry to an env request: runtime definitions, pins, torch, overrides, Python range."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from envmgr.config import load_config
from envmgr.envs.request import request_for_model
from envmgr.errors import UnresolvableError
from envmgr.envs.interpreters import model_python_spec
from envmgr.envs.runtime_defs import RUNTIMES
from registry.errors import ExitCode, StemSepError

from .conftest import entry


@pytest.fixture
def cfg(monkeypatch):
    def make(**kw):
        for var in ("STEMSEP_OVERRIDES", "STEMSEP_TORCH_BACKEND", "STEMSEP_CONSTRAINTS", "STEMSEP_FIND_LINKS"):
            monkeypatch.delenv(var, raising=False)
        return load_config(**kw)
    return make


def names(req) -> dict[str, Requirement]:
    return {Requirement(r).name: Requirement(r) for r in req.requirements}


def test_every_canonical_runtime_is_defined():
    assert set(RUNTIMES) == {"audio-separator", "msst", "stemsep-legacy"}
    for rdef in RUNTIMES.values():
        assert rdef.health_modules and rdef.python


@pytest.mark.parametrize("backend, extra", [("cpu", "cpu"), ("none", "cpu"), ("cu126", "gpu"), ("rocm6.2", "cpu")])
def test_audio_separator_extra_follows_the_torch_backend(cfg, backend, extra):
    req = request_for_model(entry(), "audio-separator", cfg(torch_backend=backend))
    lib = names(req)["audio-separator"]
    assert lib.extras == {extra} and str(lib.specifier) == "==0.47.1"
    assert "imageio-ffmpeg" in names(req)  # the env carries its own ffmpeg
    assert req.torch == "torch" and req.torch_backend == backend


def test_runtime_pin_replaces_the_default_and_keeps_extras(cfg):
    model = entry(requirements={"runtime_pins": {"audio-separator": "audio-separator==0.44.0"}})
    lib = names(request_for_model(model, "audio-separator", cfg(torch_backend="cpu")))["audio-separator"]
    assert str(lib.specifier) == "==0.44.0" and lib.extras == {"cpu"}


def test_msst_lifts_its_torch_cap_with_an_override_recorded_in_the_request(cfg):
    req = request_for_model(entry(requirements={"torch": {"min": "2.3"}}), "msst", cfg())
    lib = names(req)["msst"]
    assert str(lib.specifier) == "==0.1.0" and {"bs-roformer", "mel-band-roformer"} <= lib.extras
    # msst declares torch<2.12: the override replaces that cap but keeps the model's own range.
    assert req.overrides == ("torch>=2.3",)
    assert any("torch<2.12" in note for note in req.notes)


def test_machine_torch_override_wins_and_is_checked_against_the_model(cfg):
    config = cfg(overrides=["torch==2.13.0+cpu"])
    req = request_for_model(entry(), "msst", config)
    assert req.overrides == ("torch==2.13.0+cpu",)
    assert any("torch==2.13.0+cpu" in note for note in req.notes)
    with pytest.raises(UnresolvableError) as info:
        request_for_model(entry(requirements={"torch": {"max": "2.5"}}), "msst", config)
    assert info.value.exit_code == ExitCode.UNRESOLVABLE and info.value.packages == ["torch"]
    assert "torch<2.6" in info.value.message


def test_legacy_is_light_unless_the_model_needs_torch(cfg):
    light = request_for_model(entry(requirements={"torch": {"required": False}}), "stemsep-legacy", cfg())
    assert set(names(light)) == {"numpy", "soundfile"} and light.torch is None
    for required in (None, True):
        heavy = request_for_model(entry(requirements={"torch": {"required": required}}), "stemsep-legacy", cfg())
        # Our Roformer's whole set: torch >= 2.4 (F.rms_norm), the MSST config reader and the input resampler;
        # no einops.
        assert set(names(heavy)) == {"numpy", "soundfile", "torch", "pyyaml", "soxr"} and heavy.torch == "torch>=2.4"
        assert heavy.health_modules == ("soundfile", "numpy", "yaml", "soxr")
    # A model's own higher minimum wins over the runtime's floor; its maximum is kept.
    newer = request_for_model(entry(requirements={"torch": {"min": "2.6", "max": "2.13"}}), "stemsep-legacy", cfg())
    assert newer.torch == "torch>=2.6,<2.14"
    older = request_for_model(entry(requirements={"torch": {"min": "2.1"}}), "stemsep-legacy", cfg())
    assert older.torch == "torch>=2.4"


def test_msst_health_check_imports_only_what_the_pinned_extras_install(cfg):
    """msst[apollo] installs no Roformer libraries: checking for them failed every such build. A pin without
    extras gets the runtime's own (the Roformer ones), and their check."""
    for pin in (None, "msst==0.1.0"):
        pins = {"runtime_pins": {"msst": pin}} if pin else {}
        roformer = request_for_model(entry(requirements=pins), "msst", cfg())
        assert roformer.health_modules == ("msst", "einops", "rotary_embedding_torch"), pin
    for pin in ("msst[apollo]==0.1.0", "msst[htdemucs]==0.1.0", "msst[bandit]==0.1.0"):
        other = request_for_model(entry(requirements={"runtime_pins": {"msst": pin}}), "msst", cfg())
        assert other.health_modules == ("msst",), pin
    one = request_for_model(entry(requirements={"runtime_pins": {"msst": "msst[mel-band-roformer]==0.1.0"}}),
                            "msst", cfg())
    assert one.health_modules == ("msst", "einops", "rotary_embedding_torch")


def test_model_packages_python_range_and_machine_sources_enter_the_request(cfg):
    model = entry(requirements={"python": {"min": "3.10", "max": "3.11"},
                                "pip": {"packages": ["neuraloperator==1.0.2"]}})
    config = cfg(find_links=["/w"], index_url="http://127.0.0.1:9/simple", constraints=["numpy<3"])
    req = request_for_model(model, "msst", config)
    assert "neuraloperator==1.0.2" in req.requirements
    assert req.find_links == ("/w",) and req.index_url == "http://127.0.0.1:9/simple"
    assert req.constraints == ("numpy<3",)
    from packaging.specifiers import SpecifierSet
    spec = SpecifierSet(req.python)
    assert spec.contains("3.11.9") and not spec.contains("3.12.0") and not spec.contains("3.9.18")


def test_identical_models_give_equal_requests_and_a_pin_changes_it(cfg):
    config = cfg()
    a = request_for_model(entry("a"), "msst", config)
    b = request_for_model(entry("b"), "msst", config)
    c = request_for_model(entry("c", requirements={"pip": {"packages": ["neuraloperator==1.0.2"]}}), "msst", config)
    assert a == b and hash(a) == hash(b) and a != c


def test_unknown_runtime_and_bad_pip_requirement(cfg):
    with pytest.raises(StemSepError) as info:
        request_for_model(entry(), "uvr", cfg())
    assert info.value.exit_code == ExitCode.USAGE
    with pytest.raises(StemSepError, match="bad pip requirement"):
        request_for_model(entry(requirements={"pip": {"packages": ["torch=="]}}), "msst", cfg())


@pytest.mark.parametrize("lo, hi, inside, outside", [
    ("3.10", "3.11", ["3.10.0", "3.11.12"], ["3.9.9", "3.12.0"]),
    ("3.10", "3.11.4", ["3.11.4"], ["3.11.5"]),
    (None, None, ["3.8.0", "3.14.0"], []),
])
def test_python_min_max_semantics(lo, hi, inside, outside):
    from packaging.specifiers import SpecifierSet
    spec = SpecifierSet(model_python_spec(lo, hi))
    assert all(spec.contains(v) for v in inside) and not any(spec.contains(v) for v in outside)


@pytest.mark.parametrize("info, backend, overrides, problem", [
    ({"version": "2.13.0+cpu", "cuda": None, "hip": None}, "none", ["torch==2.13.0+cpu"], None),
    ({"version": "2.13.0", "cuda": "12.6", "hip": None}, "none", ["torch==2.13.0+cpu"], "not the pinned +cpu"),
    ({"version": "2.13.0+cu126", "cuda": "12.6", "hip": None}, "cpu", [], "GPU build"),
    ({"version": "2.13.0+cu126", "cuda": "12.6", "hip": None}, "cu126", [], None),
    ({"version": "2.13.0+cu124", "cuda": "12.4", "hip": None}, "cu126", [], "asks for CUDA 12.6"),
    ({"version": "2.13.0+rocm6.2", "cuda": None, "hip": "6.2.41133"}, "rocm6.2", [], None),
    ({"version": "2.13.0+cpu", "cuda": None, "hip": None}, "rocm6.2", [], "ROCm"),
    (None, "cpu", [], "not installed"),
])
def test_torch_variant_check(info, backend, overrides, problem):
    from envmgr.envs.torch_variant import variant_problems

    problems = variant_problems(info, backend=backend, overrides=overrides)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]
