"""One test per check code, both outcomes: each case builds a situation that must raise the code and a
near-identical one that must not.

Where the facts are cheap to make real (audio files, the model store, the session's uv-built env,
registry models through the real loader), the case runs the whole preflight; the others (a CUDA
build on a CPU machine, a runtime the tests cannot afford to resolve) call the pure rule with facts.
`test_every_code_has_a_case` keeps this table complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

from envmgr.preflight import rules
from registry.errors import StemSepError
from tests.preflight.conftest import STEPS, codes, dsp, load_with, write_audio
from tests.preflight.recipe_support import channel_codes, recipe_codes, replaced, sep, with_step

VIPERX = "bs-roformer-viperx-1297"  # a Phase Fix reference; audio-separator, msst and stemsep-legacy allowed


class T:
    """What a case may use: real files in tmp_path, the preflight runner, the registry, the store."""

    def __init__(self, tmp_path: Path, run: Any, registry: Any, config: Any, server: Any, light_env: Any) -> None:
        self.tmp, self.run, self.registry, self.config, self.server = tmp_path, run, registry, config, server
        self.song = write_audio(tmp_path / "song.wav")

    def codes(self, inputs: list[Path] | None = None, model: str | None = "pf-dsp", **fields: Any) -> set[str]:
        return codes(self.run(inputs if inputs is not None else [self.song], model, **fields))

    def audio(self, name: str, **kw: Any) -> Path:
        return write_audio(self.tmp / name, **kw)

    def bytes(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def entry(self, model_id: str) -> Any:
        return self.registry.get(model_id)

    # -- artifacts: a per-test model whose artifact the store holds (or not) --------------------------

    def artifact_codes(self, *, url: bool = True, pinned: bool = True, stored: bytes | None = None,
                       symlink: bool = False, kind: str = "other", extra: dict | None = None,
                       trust: bytes | None = None, fresh: bool = True, **fields: Any) -> set[str]:
        data = b"weights " * 64
        art = {"kind": kind, "filename": "w.bin", **(extra or {})}
        if pinned:
            art["sha256"] = hashlib.sha256(data).hexdigest()
        if url:
            art["url"] = self.server.file("/w.bin", data)
        if kind == "code":  # the validator wants the model type it provides to be the model's
            art.update(model_type="pf_code_type", class_name="Net")
        slot = {"primary": art} if kind == "checkpoint" else {"additional": [art]}
        model = dsp("pf-art", artifacts=slot, **({"runtime": {"model_type": "pf_code_type"}} if kind == "code"
                                                 else {}))
        registry = load_with(self.tmp, model)
        target = self.config.model_store / "pf-art" / "w.bin"
        if fresh:  # each call starts from an empty store and trusts nothing yet (unless it goes on from the last)
            shutil.rmtree(target.parent, ignore_errors=True)
            shutil.rmtree(self.config.state_dir, ignore_errors=True)
        if stored is not None or symlink:
            target.parent.mkdir(parents=True, exist_ok=True)
            if symlink:
                (self.tmp / "elsewhere.bin").write_bytes(data)
                target.symlink_to(self.tmp / "elsewhere.bin")
            else:
                target.write_bytes(data if stored == b"right" else stored)
        if trust is not None:  # the user reviewed a file with these bytes and trusted it
            from envmgr.preflight.code_trust import trust as record_trust

            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(trust)
            record_trust(self.config.state_dir, registry.get("pf-art"), "w.bin", target)
            target.write_bytes(data)
        return codes(self.run([self.song], "pf-art", registry_=registry, **fields))


def _fifo(t: T) -> Path:
    path = t.tmp / "pipe.wav"
    os.mkfifo(path)
    return path


def _unreadable(t: T) -> Path:
    """A file that cannot be read: no permission for a normal user; as root, a /proc file that fails with EIO."""
    path = t.bytes("locked.wav", b"RIFF")
    os.chmod(path, 0)
    try:
        with open(path, "rb"):
            pass
    except OSError:
        return path
    return Path("/proc/self/mem")  # root reads anything else; reading this at offset 0 is an I/O error


def _zero_frames(t: T) -> Path:
    path = t.tmp / "zero.wav"
    sf.write(path, np.zeros((0, 2)), 44100)
    return path


def _env(**kw: Any) -> rules.EnvFacts:
    base: dict[str, Any] = dict(state="ready", env_id="stemsep-legacy-0", python="3.11.7", python_spec=">=3.10",
                                python_seen_in="env")
    return rules.EnvFacts(**{**base, **kw})


def _env_codes(t: T, model: str = "pf-dsp", runtime: str = "stemsep-legacy", **kw: Any) -> set[str]:
    return {f.code for f in rules.check_env(t.entry(model), runtime, _env(**kw))[0]}


def _adopted(changes: list[str]) -> dict[str, Any]:
    """An adopted env's record in EnvFacts (envmgr/preflight/adopted_env.py); tests/envmgr/test_adopted_envs.py
    runs the real thing."""
    return {"name": "mine", "python": "/opt/mine/bin/python", "fingerprint": "b" * 16,
            "adopted_fingerprint": "a" * 16 if changes else "b" * 16, "changes": changes}


def _torch(**kw: Any) -> dict[str, Any]:
    return dict(torch_spec="torch>=2.0", torch="2.13.0+cpu", torch_seen_in="env", torch_backend="cpu",
                torch_build={"cuda": None, "hip": None}, **kw)


def _cuda_build_in_cpu_env() -> tuple[str, ...]:
    """What envmgr.envs.torch_variant finds in an env holding a CUDA torch when the machine asks for the CPU build."""
    from envmgr.envs.torch_variant import variant_problems

    return tuple(variant_problems({"version": "2.13.0+cu126", "cuda": "12.6", "hip": None}, backend="cpu",
                                  overrides=["torch==2.13.0+cpu"]))


def _channels(t: T, path: Path, model: str, runtime: str) -> set[str]:
    from envmgr.preflight.run import probe_audio

    return {f.code for f in rules.check_channels(probe_audio(path), t.entry(model), runtime)}


def _rate(t: T, rate: int, model: str = VIPERX) -> set[str]:
    from envmgr.preflight.run import probe_audio

    path = t.audio(f"r{rate}.wav", rate=rate)
    return {f.code for f in rules.check_sample_rate(probe_audio(path), t.entry(model))}


def _memory(t: T, runtime: str, minutes: float, available_mib: float | None = 4096.0) -> set[str]:
    """A long stereo input (header facts) on `runtime` with this much memory available now."""
    audio = rules.AudioFacts("live.flac", sample_rate=44100, channels=2, frames=int(minutes * 60 * 44100))
    return {f.code for f in rules.check_memory(audio, t.entry(VIPERX), runtime, available_mib, weights_mib=600.0)}


def _settings(t: T, runtime: str, user: dict[str, Any]) -> set[str]:
    return {f.code for f in rules.resolve_job_settings(t.entry(VIPERX), runtime, user)[1]}


def _trust(trusted: str | None, stored: str | None = "a" * 64) -> set[str]:
    found: list[rules.Finding] = []
    art = rules.ArtifactFacts("net.py", "code", "present", sha256=stored, trusted_sha256=trusted)
    found += rules.check_artifacts("m", [art], require_hashes=False, download=True)[0]
    return {f.code for f in found}


UNSAFE = {"unsafe_pickle": True}


def _pickle_consent(t: T, *, then: bytes = b"right", pinned: bool = True) -> set[str]:
    """Consent given on an earlier run (--allow-unsafe-pickle, remembered for the file's content), then a run
    without the flag, the store holding `then`."""
    t.artifact_codes(kind="checkpoint", extra=UNSAFE, pinned=pinned, stored=b"right", allow_unsafe_pickle=True)
    return t.artifact_codes(kind="checkpoint", extra=UNSAFE, pinned=pinned, stored=then, fresh=False)


URL_REQ = "six @ file:///nonexistent/six-1.17.0-py2.py3-none-any.whl"  # installs whatever file is there


def _direct(t: T, requirement: str, *, trusted: bool = False) -> set[str]:
    """A user's model whose pip requirement installs from a direct URL or path; `trusted`: the user trusted it with
    `stemsep models trust` (code_trust) before the run."""
    registry = load_with(t.tmp, dsp("pf-url", requirements={"pip": {"packages": [requirement]}}))
    shutil.rmtree(t.config.state_dir, ignore_errors=True)
    if trusted:
        from envmgr.preflight.code_trust import trust_requirement

        assert trust_requirement(t.config.state_dir, registry.get("pf-url"), requirement) is not None
    return codes(t.run([t.song], "pf-url", registry_=registry))


def _no_default(t: T) -> set[str]:
    from registry.loader import load_registry

    path = t.tmp / "only.json"
    path.write_text(json.dumps({"schema_version": "1", "models": [dsp("pf-only")]}))
    return codes(t.run([t.song], None, registry_=load_registry(paths=[path], mode="compat")))


def _invalid_entry() -> Any:
    from registry.model import ModelEntry

    return ModelEntry.model_validate(dsp("pf-bad", runtime={"preferred": "msst"}))  # the validator never saw it


def _uvr_params(t: T, present: bool) -> set[str]:
    """A user's copy of an MDX-Net entry (read in compat mode, where a missing uvr_model_data only warns)."""
    entry = t.entry("mdx-net-hq4").to_json()
    entry["id"] = f"pf-mdx-{str(present).lower()}"
    entry["artifacts"]["primary"]["filename"] = f"{entry['id']}.onnx"
    if not present:
        del entry["uvr_model_data"]
    return {f.code for f in rules.route(load_with(t.tmp, entry).get(entry["id"]), None)[1]}


def _mono_roformer(t: T, runtime: str) -> set[str]:
    """A user's copy of a BS-Roformer made mono and allowed only on `runtime` (compat mode lets it load)."""
    entry = t.entry(VIPERX).to_json()
    entry["id"] = f"pf-mono-{runtime}"
    entry["capabilities"]["supports_stereo"] = False
    entry["runtime"].update(allowed=[runtime], preferred=runtime)
    entry["artifacts"]["primary"]["filename"] = f"{entry['id']}.ckpt"
    return {f.code for f in rules.route(load_with(t.tmp, entry).get(entry["id"]), None)[1]}


def _config(t: T, runtime: str, drop: tuple[str, ...] = (), stereo: bool = True) -> set[str]:
    """VIPERX's real MSST config in the model store, `drop`ped keys removed, judged for `runtime`: through the
    small YAML reader (envmgr/preflight/config_file.py) and the rule."""
    from envmgr.preflight.run import config_facts
    from tests.conftest import REPO

    entry = t.entry(VIPERX)
    name = entry.artifacts.config.filename
    lines = (REPO / "tests" / "fixtures" / "msst-configs" / name).read_text().splitlines()
    lines = [ln.replace("stereo: true", f"stereo: {str(stereo).lower()}") for ln in lines
             if ln.strip().split(":")[0] not in drop]
    path = t.tmp / name
    path.write_text("\n".join(lines) + "\n")
    facts = config_facts(entry, [rules.ArtifactFacts(name, "config", "present", path=str(path))])
    assert facts is not None and ("training.target_instrument" in facts.keys) != ("target_instrument" in drop)
    return {f.code for f in rules.check_config(entry, runtime, facts)}


def _torchvision(t: T, vision: str, declared: str | None, model: str = "mdx-net-hq4") -> set[str]:
    return _env_codes(t, model=model, runtime="audio-separator", **_torch(torchvision=vision,
                                                                          torchvision_torch=declared))


def _torchaudio(t: T, audio: str, declared: str | None) -> set[str]:
    """msst's htdemucs imports torchaudio (through openunmix) beside the env's torch 2.13.0+cpu."""
    return _env_codes(t, model="htdemucs", runtime="msst", **_torch(torchaudio=audio, torchaudio_torch=declared))


def _system_library(t: T, model: str, present: bool) -> set[str]:
    """audio-separator's multi-band VR models load libsamplerate; one-band ones need none."""
    return {f.code for f in rules.check_system_libraries(t.entry(model), "audio-separator", {"samplerate": present})}


def _broken(t: T, broken: bool) -> set[str]:
    """A real env in a private store; a crash mid-build leaves it without its marker: broken."""
    from envmgr.config import load_config
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.envs.store import MARKER

    config = load_config(env_store=t.tmp / "envs", model_store=t.config.model_store, state_dir=t.config.state_dir)
    env = EnvManager(config).ensure(request_for_model(t.entry("pf-dsp"), "stemsep-legacy", config))
    if broken:
        (env.path / MARKER).unlink()
    return codes(t.run([t.song], "pf-dsp", config_=config))


def _unreachable_index(t: T) -> set[str]:
    from envmgr.config import load_config

    config = load_config(index_url="http://127.0.0.1:9/simple", model_store=t.config.model_store,
                         state_dir=t.config.state_dir)
    return codes(t.run([t.song], "pf-unbuilt", config_=config))


def _store_under_file(t: T, blocked: bool) -> set[str]:
    """An env that must be built, its store under a regular file (or not): E_STORE before any build."""
    import tempfile

    from envmgr.config import load_config

    root = Path(tempfile.mkdtemp(prefix="pf-store-"))
    (root / "a-file").write_text("not a dir")
    store = root / "a-file" / "envs" if blocked else root / "envs"
    config = load_config(env_store=store, model_store=t.config.model_store, state_dir=t.config.state_dir)
    return codes(t.run([t.song], "pf-unbuilt", config_=config))


def _torch_override(t: T, runtime: str, model: str) -> set[str]:
    from envmgr.preflight.run import env_facts

    entry = t.entry(model)
    return {f.code for f in rules.check_env(entry, runtime, env_facts(entry, runtime, t.config, resolve=False))[0]}


def _confirmed(t: T, confirm_first: bool) -> set[str]:
    shutil.rmtree(t.config.state_dir, ignore_errors=True)  # no confirmation recorded yet
    if confirm_first:
        t.codes(model="pf-steps", confirm_manual_steps=True)
    return t.codes(model="pf-steps")


Case = tuple[Callable[[T], set[str]], Callable[[T], set[str]]]
CASES: dict[str, Case] = {
    # input audio
    "E_NO_INPUT": (lambda t: t.codes([]), lambda t: t.codes()),
    "E_INPUT_NOT_FOUND": (lambda t: t.codes([t.tmp / "nope.wav"]), lambda t: t.codes()),
    "E_INPUT_IS_DIR": (lambda t: t.codes([t.tmp]), lambda t: t.codes()),
    "E_INPUT_NOT_FILE": (lambda t: t.codes([_fifo(t)]), lambda t: t.codes()),
    "E_INPUT_UNREADABLE": (lambda t: t.codes([_unreadable(t)]), lambda t: t.codes()),
    "E_INPUT_EMPTY": (lambda t: t.codes([t.bytes("empty.wav", b"")]) & t.codes([_zero_frames(t)]),
                      lambda t: t.codes()),
    "E_INPUT_UNDECODABLE": (lambda t: t.codes([t.bytes("notes.wav", b"not audio\n" * 50)]), lambda t: t.codes()),
    "E_INPUT_CHANNELS": (lambda t: t.codes([t.audio("surround.wav", channels=3)]), lambda t: t.codes()),
    "E_MONO_UNSUPPORTED": (lambda t: t.codes([t.audio("mono.wav", channels=1)], "pf-stereo-only"),
                           lambda t: t.codes(model="pf-stereo-only")),
    "E_STEREO_UNSUPPORTED": (lambda t: t.codes(model="pf-mono-only"),
                             lambda t: t.codes([t.audio("mono.wav", channels=1)], "pf-mono-only")),
    "W_UPMIX": (lambda t: _channels(t, t.audio("mono.wav", channels=1), "pf-stereo-only", "msst"),
                lambda t: _channels(t, t.song, "pf-stereo-only", "msst")),
    "W_DOWNMIX": (lambda t: _channels(t, t.song, "pf-mono-only", "msst"),
                  lambda t: _channels(t, t.audio("mono.wav", channels=1), "pf-mono-only", "msst")),
    "W_RESAMPLE": (lambda t: _rate(t, 48000), lambda t: _rate(t, 44100) | _rate(t, 48000, "pf-dsp")),
    "W_INPUTS_SKIPPED": (lambda t: t.codes([t.song, t.tmp / "nope.wav"]), lambda t: t.codes()),
    "W_MEMORY_PEAK": (lambda t: _memory(t, "msst", 120) & _memory(t, "audio-separator", 120),
                      lambda t: _memory(t, "stemsep-legacy", 120) | _memory(t, "msst", 3)
                      | _memory(t, "msst", 120, available_mib=None)),
    # model and runtime
    "E_UNKNOWN_MODEL": (lambda t: t.codes(model="pf-dsq"), lambda t: t.codes()),
    "E_NO_DEFAULT_MODEL": (_no_default, lambda t: t.codes(model=None)),
    "E_UNKNOWN_RUNTIME": (lambda t: t.codes(runtime="msts"), lambda t: t.codes(runtime="stemsep-legacy")),
    "E_NO_RUNTIME": (lambda t: t.codes(model="pf-catalog"), lambda t: t.codes()),
    "E_RUNTIME_NOT_ALLOWED": (lambda t: t.codes(model="builtin-center-split", runtime="msst"),
                              lambda t: t.codes(model="builtin-center-split", runtime="stemsep-legacy")),
    "E_REGISTRY_INVALID": (lambda t: {f.code for f in rules.route(_invalid_entry(), None)[1]},
                           lambda t: {f.code for f in rules.route(t.entry("pf-dsp"), None)[1]}),
    "E_UVR_PARAMS_MISSING": (lambda t: _uvr_params(t, False), lambda t: _uvr_params(t, True)),
    "E_RUNTIME_CANNOT_RUN": (lambda t: _mono_roformer(t, "msst") & _config(t, "msst", stereo=False),
                             lambda t: _mono_roformer(t, "stemsep-legacy") | _config(t, "msst")
                             | _config(t, "stemsep-legacy", stereo=False)),
    "E_CONFIG_KEY_MISSING": (lambda t: _config(t, "audio-separator", drop=("instruments",)),
                             lambda t: _config(t, "audio-separator") | _config(t, "msst", drop=("instruments",))),
    "W_CONFIG_ADAPTED": (lambda t: _config(t, "audio-separator", drop=("target_instrument",)),
                         lambda t: _config(t, "audio-separator") | _config(t, "msst", drop=("target_instrument",))),
    # settings
    "E_SETTINGS": (lambda t: _settings(t, "msst", {"overlap": 0.5}), lambda t: _settings(t, "msst", {"overlap": 2})),
    "E_SETTING_RANGE": (lambda t: _settings(t, "msst", {"segment_size": 8, "overlap": 9})  # step 8 // 9 = 0
                        & _settings(t, "audio-separator", {"segment_size": 1}),  # chunk = hop * (1 - 1) = 0
                        lambda t: _settings(t, "msst", {"segment_size": 8, "overlap": 8})
                        | _settings(t, "audio-separator", {"segment_size": 2})),
    "W_SETTING_OVERRIDDEN": (lambda t: _settings(t, "audio-separator", {"overlap": 8}),
                             lambda t: _settings(t, "audio-separator", {})),
    "W_SETTING_IGNORED": (lambda t: t.codes(settings={"overlap": 4}), lambda t: t.codes()),
    # artifacts
    "W_ARTIFACT_DOWNLOAD": (lambda t: t.artifact_codes(), lambda t: t.artifact_codes(stored=b"right")),
    "E_ARTIFACT_NOT_LOCAL": (lambda t: t.artifact_codes(download=False),
                             lambda t: t.artifact_codes(stored=b"right", download=False)),
    "E_ARTIFACT_MISSING": (lambda t: t.artifact_codes(url=False), lambda t: t.artifact_codes(url=False,
                                                                                            stored=b"right")),
    "W_ARTIFACT_HASH_MISMATCH": (lambda t: t.artifact_codes(stored=b"other bytes"),
                                 lambda t: t.artifact_codes(stored=b"right")),
    "E_ARTIFACT_HASH_MISMATCH": (lambda t: t.artifact_codes(url=False, stored=b"other bytes"),
                                 lambda t: t.artifact_codes(url=False, stored=b"right")),
    "E_ARTIFACT_UNSAFE": (lambda t: t.artifact_codes(symlink=True), lambda t: t.artifact_codes(stored=b"right")),
    "W_ARTIFACT_UNPINNED": (lambda t: t.artifact_codes(pinned=False), lambda t: t.artifact_codes()),
    "E_ARTIFACT_UNPINNED": (lambda t: t.artifact_codes(pinned=False, require_hashes=True),
                            lambda t: t.artifact_codes(require_hashes=True)),
    "E_UNSAFE_PICKLE": (lambda t: t.artifact_codes(kind="checkpoint", extra=UNSAFE)
                        & _pickle_consent(t, pinned=False, then=b"other bytes"),  # consent names the content
                        lambda t: t.artifact_codes(kind="checkpoint", extra=UNSAFE, allow_unsafe_pickle=True)
                        | _pickle_consent(t) | _pickle_consent(t, pinned=False) | t.artifact_codes(kind="checkpoint")),
    "W_UNSAFE_PICKLE": (lambda t: t.artifact_codes(kind="checkpoint", extra=UNSAFE, allow_unsafe_pickle=True)
                        & _pickle_consent(t) & _pickle_consent(t, pinned=False),
                        lambda t: t.artifact_codes(kind="checkpoint", extra=UNSAFE)
                        | _pickle_consent(t, pinned=False, then=b"other bytes")
                        | t.artifact_codes(kind="checkpoint", allow_unsafe_pickle=True)),
    "W_UNSAFE_PICKLE_IGNORED": (lambda t: t.artifact_codes(kind="checkpoint", allow_unsafe_pickle=True),
                                lambda t: t.artifact_codes(kind="checkpoint", extra=UNSAFE, allow_unsafe_pickle=True)
                                | t.artifact_codes(kind="checkpoint")),
    "W_CODE_USER_TRUSTED": (lambda t: t.artifact_codes(kind="code", pinned=False, trust=b"weights " * 64)
                            & _trust("a" * 64),
                            lambda t: t.artifact_codes(kind="code", pinned=False) | _trust(None) | _trust("b" * 64)),
    "E_CODE_UNTRUSTED": (lambda t: t.artifact_codes(kind="code", pinned=False)  # nobody trusted it
                         & t.artifact_codes(kind="code", pinned=False, trust=b"reviewed, then changed"),
                         lambda t: t.artifact_codes(kind="code") | _trust("a" * 64)),
    "E_REQUIREMENT_UNTRUSTED": (lambda t: _direct(t, URL_REQ) & _direct(t, "six @ https://example.org/six.whl")
                                & _direct(t, URL_REQ + "#md5=" + "a" * 32),  # md5 is no pin
                                lambda t: _direct(t, URL_REQ + "#sha256=" + "a" * 64) | _direct(t, URL_REQ, trusted=True)
                                | _direct(t, "six==1.17.0")),
    "W_REQUIREMENT_USER_TRUSTED": (lambda t: _direct(t, URL_REQ, trusted=True),
                                   lambda t: _direct(t, URL_REQ) | _direct(t, URL_REQ + "#sha256=" + "a" * 64,
                                                                           trusted=True)),
    # env and requirements
    "W_ENV_NEEDS_BUILD": (lambda t: t.codes(model="pf-unbuilt"), lambda t: t.codes()),
    "W_ENV_BROKEN": (lambda t: _broken(t, True), lambda t: _broken(t, False)),
    "W_ENV_CHANGED": (lambda t: _env_codes(t, state="adopted", adopted=_adopted(["idna 3.10 installed"])),
                      lambda t: _env_codes(t, state="adopted", adopted=_adopted([]))),
    "E_ENV_UNRESOLVABLE": (lambda t: t.codes(model="pf-conflict"), lambda t: t.codes()),
    "E_NO_INTERPRETER": (lambda t: t.codes(model="pf-python2"), lambda t: t.codes()),
    "E_ENV_RESOLVE": (_unreachable_index, lambda t: t.codes(model="pf-unbuilt")),
    "E_ENV_REQUEST": (lambda t: _env_codes(t, state="invalid", error=StemSepError("bad requirement 'x=='")),
                      lambda t: _env_codes(t)),
    "E_STORE": (lambda t: _store_under_file(t, True), lambda t: _store_under_file(t, False)),
    "E_PYTHON_MISMATCH": (lambda t: _env_codes(t, python="3.9.1"), lambda t: _env_codes(t, python="3.12.1")),
    "E_TORCH_MISMATCH": (lambda t: _env_codes(t, **{**_torch(), "torch_spec": "torch>=2.14"}),
                         lambda t: _env_codes(t, **_torch())),
    "E_TORCH_VARIANT": (lambda t: _env_codes(t, **_torch(torch_variant_problems=_cuda_build_in_cpu_env()))
                        | _env_codes(t, **{**_torch(), "torch_backend": "cu118"}, model="pf-cuda-only"),
                        lambda t: _env_codes(t, **_torch()) | _env_codes(t, **{**_torch(), "torch_backend": "cu126"},
                                                                         model="pf-cuda-only", nvidia=True)),
    "W_TORCH_NO_GPU": (lambda t: _env_codes(t, **{**_torch(), "torch_backend": "cu126", "torch": "2.13.0+cu126",
                                                  "torch_build": None}),
                       lambda t: _env_codes(t, **{**_torch(), "torch_backend": "cu126", "torch": "2.13.0+cu126",
                                                  "torch_build": None}, nvidia=True)),
    "W_TORCH_GPU_UNUSED": (lambda t: _env_codes(t, **_torch(), nvidia=True), lambda t: _env_codes(t, **_torch())),
    "W_TORCH_OVERRIDE": (lambda t: _torch_override(t, "msst", VIPERX),
                         lambda t: _torch_override(t, "audio-separator", VIPERX)),
    "E_TORCHVISION_MISMATCH": (lambda t: _torchvision(t, "0.29.2", ">=2.14.0")  # metadata of a built env
                               & _torchvision(t, "0.29.2", None),  # the lock: PyTorch's published pairing
                               lambda t: _torchvision(t, "0.28.0", "==2.13.0") | _torchvision(t, "0.28.1", None)),
    # another release under a loose metadata range (this machine's PyPI build), or PyPI's CUDA build of the same
    # release beside a CPU torch; fits: the same release and build label
    "E_TORCHAUDIO_MISMATCH": (lambda t: _torchaudio(t, "2.11.1", ">=2.11") & _torchaudio(t, "2.13.0", "==2.13.0"),
                              lambda t: _torchaudio(t, "2.13.0+cpu", "==2.13.0") | _torchaudio(t, "2.13.1+cpu", None)),
    "E_SYSTEM_LIBRARY_MISSING": (lambda t: _system_library(t, "uvr-denoise", False),
                                 lambda t: _system_library(t, "uvr-denoise", True)
                                 | _system_library(t, "uvr-denoise-lite", False)),
    "E_PIP_MISSING": (lambda t: _env_codes(t, pip=(rules.PipFacts("six", None, "env"),)),
                      lambda t: _env_codes(t, pip=(rules.PipFacts("six", "1.17.0", "env"),
                                                   rules.PipFacts("six", None, "lock")))),
    "E_PIP_VERSION": (lambda t: _env_codes(t, pip=(rules.PipFacts("six>=1.16", "1.15.0", "env"),)),
                      lambda t: _env_codes(t, pip=(rules.PipFacts("six>=1.16", "1.17.0", "env"),))),
    # manual steps
    "E_MANUAL_STEPS": (lambda t: t.codes(model="pf-steps"),
                       lambda t: t.codes(model="pf-steps", confirm_manual_steps=True)
                       | t.codes(model="pf-steps-automated")),
    "W_MANUAL_STEPS_CONFIRMED": (lambda t: _confirmed(t, True), lambda t: _confirmed(t, False) | t.codes()),
    # Phase Fix
    "E_PHASE_FIX_REFERENCE": (lambda t: t.codes(phase_fix_reference="builtin-center-split")
                              & t.codes(phase_fix_reference="no-such-model"),
                              lambda t: t.codes(phase_fix_reference=VIPERX)),
    "E_PHASE_FIX_PARAMS": (lambda t: t.codes(phase_fix_reference=VIPERX, phase_fix_params={"lowHz": 6000}),
                           lambda t: t.codes(phase_fix_reference=VIPERX, phase_fix_params={"lowHz": 400})),
    "W_PHASE_FIX_OVERRIDE": (lambda t: t.codes(phase_fix_reference=VIPERX, phase_fix_params={"lowHz": 400}),
                             lambda t: t.codes(phase_fix_reference=VIPERX)),
    # recipes (tests/preflight/recipe_support.py: a valid base recipe, and one fault each)
    "E_RECIPE_CYCLE": (lambda t: recipe_codes(t, with_step({"id": "x", "op": "high_pass", "inputs": ["y.vocals"],
                                                            "params": {"cutoff_hz": 80}})
                                              + [{"id": "y", "op": "high_pass", "inputs": ["x.vocals"],
                                                  "params": {"cutoff_hz": 80}}]),
                       lambda t: recipe_codes(t)),
    "E_RECIPE_UNKNOWN_STEP": (lambda t: recipe_codes(t, outputs={"vocals": "nope.vocals"}),
                              lambda t: recipe_codes(t)),
    "E_RECIPE_UNKNOWN_STEM": (lambda t: recipe_codes(t, outputs={"vocals": "ens.vocals", "x": "a.noreverb"}),
                              lambda t: recipe_codes(t, outputs={"vocals": "ens.vocals", "x": "a.instrumental"})),
    "E_RECIPE_ROLE_INPUT": (lambda t: recipe_codes(t, with_step(sep("dry", "pf-dereverb", "a.instrumental")),
                                                   {"dry": "dry.noreverb"}),
                            lambda t: recipe_codes(t, with_step(sep("dry", "pf-dereverb", "ens.vocals")),
                                                   {"dry": "dry.noreverb", "instrumental": "fix.instrumental"})),
    "E_RECIPE_ENSEMBLE_STEMS": (lambda t: recipe_codes(t, replaced("ens", {"id": "ens", "op": "ensemble",
                                                                           "inputs": ["a.vocals", "b.instrumental"]})),
                                lambda t: recipe_codes(t)),
    "E_RECIPE_CHANNELS": (lambda t: channel_codes(mono_model=True), lambda t: channel_codes(mono_model=False)),
    "W_RECIPE_UNUSED_STEP": (lambda t: recipe_codes(t, with_step(sep("extra", "pf-dsp"))),
                             lambda t: recipe_codes(t)),
    # enforcement
    "W_DEV_OVERRIDE": (lambda t: t.codes(model="pf-steps", enforcement="soft", dev_override=True),
                       lambda t: t.codes(model="pf-steps", enforcement="soft")
                       | t.codes(enforcement="soft", dev_override=True)),
    "W_NOT_ENFORCED": (lambda t: t.codes(model="pf-steps", enforcement="report"),
                       lambda t: t.codes(enforcement="report")),
    "W_DEV_OVERRIDE_IGNORED": (lambda t: t.codes(model="pf-steps", enforcement="strict", dev_override=True),
                               lambda t: t.codes(model="pf-steps", enforcement="soft", dev_override=True)),
}


def test_every_code_has_a_case() -> None:
    assert set(CASES) == set(rules.CODES)


@pytest.mark.parametrize("code", sorted(rules.CODES))
def test_code_both_outcomes(code: str, tmp_path: Path, run: Any, registry: Any, config: Any, server: Any,
                            light_env: Any) -> None:
    bad, good = CASES[code]
    t = T(tmp_path, run, registry, config, server, light_env)
    assert code in bad(t)
    assert code not in good(t)


def test_messages_say_what_why_and_what_to_do(tmp_path: Path, run: Any, server: Any, light_env: Any) -> None:
    """Blocking errors carry a hint; the quoted registry data reaches the user."""
    result = run([tmp_path / "nope.wav"], "builtin-center-split", runtime="msst")
    errors = {e["code"]: e for e in result.report["errors"]}
    assert errors["E_INPUT_NOT_FOUND"]["hint"]
    assert "built-in DSP" in errors["E_RUNTIME_NOT_ALLOWED"]["why"]  # the registry's blocking_reason
    assert "--runtime stemsep-legacy" in errors["E_RUNTIME_NOT_ALLOWED"]["hint"]
    unknown = run([tmp_path / "nope.wav"], "pf-dsq")
    assert "pf-dsp" in unknown.report["errors"][-1]["hint"]  # nearest ids
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200)
    undecodable = next(e for e in run([m4a], "pf-dsp").report["errors"] if e["code"] == "E_INPUT_UNDECODABLE")
    assert "ffmpeg" in undecodable["hint"] and ".m4a" in undecodable["hint"]
    steps = next(e for e in run([tmp_path / "nope.wav"], "pf-steps").report["errors"]
                 if e["code"] == "E_MANUAL_STEPS")
    assert all(s in steps["message"] for s in STEPS) and "--confirm-manual-steps" in steps["hint"]
