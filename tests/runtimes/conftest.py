"""Fixtures for the audio-separator and msst runtime tests: the runtimes' real uv-built envs (built once
per session through EnvManager, the same requests `stemsep separate` makes), tiny BS-Roformer configs
(the viperx layout scaled down) and random-weight checkpoints made inside the msst env, the variant
models' code files, a network-blocking worker hook, and a job builder.

Torch runs single-threaded in the workers (OMP_NUM_THREADS=1): on a 2-core machine shared with other
jobs, OpenMP threads that spin against each other make a tiny model 40x slower.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.envs

FIXTURES = Path(__file__).with_name("fixtures")
MAKE_CHECKPOINT = Path(__file__).with_name("make_checkpoint.py")
SEGM_CODE = FIXTURES / "bs_roformer_segm.py"
FNO_CODE = FIXTURES / "bs_roformer_fno.py"
DEMO_MIX = REPO / "scripts" / "demo" / "demo_mix.flac"
FNO_PIN = "neuraloperator==1.0.2"

# msst's BS-Roformer default band split (viperx ep_317 uses it): 62 bands over 1025 bins.
VIPERX_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)


def tiny_config(*, chunk_seconds: int = 4, num_overlap: int = 2, bands: tuple[int, ...] = VIPERX_BANDS,
                **model: Any) -> dict[str, Any]:
    """The viperx BS-Roformer config scaled down to run on 2 CPU cores in seconds. Two predicted stems
    (no target instrument), so every runtime returns the same stems.

    zero_dc is off: msst (and stemsep-legacy) zero the DC bin of the output when it is on, audio-separator
    0.47.1's own BS-Roformer ignores the flag; with it on, the runtimes differ by design, not by settings."""
    hop = 441
    chunk = 44100 * chunk_seconds
    return {
        "audio": {"chunk_size": chunk, "dim_f": 1024, "dim_t": chunk // hop + 1, "hop_length": hop, "n_fft": 2048,
                  "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.0},
        "model": {"dim": 32, "depth": 2, "stereo": True, "num_stems": 2, "time_transformer_depth": 1,
                  "freq_transformer_depth": 1, "linear_transformer_depth": 0, "freqs_per_bands": tuple(bands),
                  "dim_head": 16, "heads": 2, "attn_dropout": 0.0, "ff_dropout": 0.0, "flash_attn": True,
                  "dim_freqs_in": 1025, "stft_n_fft": 2048, "stft_hop_length": hop, "stft_win_length": 2048,
                  "stft_normalized": False, "mask_estimator_depth": 2, "zero_dc": False, **model},
        "training": {"instruments": ["vocals", "other"], "target_instrument": None, "batch_size": 1,
                     "use_amp": True},
        "inference": {"batch_size": 1, "dim_t": chunk // hop + 1, "num_overlap": num_overlap},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.dump(data, Dumper=yaml.Dumper, sort_keys=False))  # tuples stay !!python/tuple
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_entry(model_id: str, runtimes: list[str], *, model_type: str = "bs_roformer", pip: tuple[str, ...] = (),
                architecture: str = "BS-Roformer", overlap: int | None = 2) -> dict[str, Any]:
    """A registry entry (JSON form) for a test model; artifacts are added by the caller."""
    entry: dict[str, Any] = {
        "id": model_id, "name": f"test: {model_id}", "architecture": architecture,
        "runtime": {"allowed": runtimes, "preferred": runtimes[0], "model_type": model_type},
        "capabilities": {"stems": ["vocals", "other"], "roles": ["separation"], "supports_stereo": True},
        "requirements": {"pip": {"packages": list(pip)}},
    }
    if overlap is not None:
        entry["recommended_settings"] = {"overlap": overlap}
        entry["settings_semantics"] = {"overlap": {"meaning": "divisor"}}
    return entry


def runtime_env(runtime: str, pip: tuple[str, ...] = ()) -> Any:
    """The env `stemsep separate` builds for a BS-Roformer on `runtime` with these pip packages."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.model import ModelEntry

    manager = EnvManager()
    data = model_entry("env-probe", [runtime], pip=pip)
    if runtime == "stemsep-legacy":  # its neural models need torch (the DSP default does not)
        data["requirements"]["torch"] = {"required": True}
    entry = ModelEntry.model_validate(data)
    return manager.ensure(request_for_model(entry, runtime, manager.config))


@pytest.fixture(scope="session", autouse=True)
def single_threaded_torch() -> Iterator[None]:
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # passed on to workers (envmgr.worker.process)
    yield
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="session")
def network_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every worker these tests start runs cut off the network (the hook logs any attempt here)."""
    from envmgr.worker.process import TEST_HOOK_ENV

    hook, log = offline_hook(tmp_path_factory.mktemp("offline"))
    before = os.environ.get(TEST_HOOK_ENV)
    os.environ[TEST_HOOK_ENV] = str(hook)  # passed on to every worker (envmgr.worker.process)
    yield log
    if before is None:
        os.environ.pop(TEST_HOOK_ENV, None)
    else:
        os.environ[TEST_HOOK_ENV] = before


def start_worker(env: Any, runtime: str, code: Any) -> Any:
    from envmgr.worker.client import WorkerClient

    client = WorkerClient(env.python, runtime, code, env_id=env.id)
    client.start()
    return client


@pytest.fixture(scope="session")
def msst_worker(msst_env: Any, worker_code: Any, network_log: Path) -> Iterator[Any]:
    client = start_worker(msst_env, "msst", worker_code)
    yield client
    client.close()


@pytest.fixture(scope="session")
def as_worker(audio_separator_env: Any, worker_code: Any, network_log: Path) -> Iterator[Any]:
    client = start_worker(audio_separator_env, "audio-separator", worker_code)
    yield client
    client.close()


@pytest.fixture(scope="session")
def msst_env(stemsep_home: Path) -> Any:
    return runtime_env("msst")


@pytest.fixture(scope="session")
def fno_env(stemsep_home: Path) -> Any:
    return runtime_env("msst", (FNO_PIN,))


@pytest.fixture(scope="session")
def audio_separator_env(stemsep_home: Path) -> Any:
    return runtime_env("audio-separator")


@pytest.fixture(scope="session")
def worker_code(stemsep_home: Path) -> Any:
    from envmgr.config import load_config
    from envmgr.worker.code_copy import ensure_worker_code

    return ensure_worker_code(load_config().cache_dir)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtimes")


def make_checkpoint(python: Path, config: Path, out: Path, *, model_type: str = "bs_roformer",
                    code: Path | None = None, seed: int = 0, pickled_object: Path | None = None) -> Path:
    cmd = [str(python), str(MAKE_CHECKPOINT), "--config", str(config), "--out", str(out), "--model-type", model_type,
           "--seed", str(seed)]
    if code:
        cmd += ["--code", str(code)]
    if pickled_object:
        cmd += ["--pickled-object", str(pickled_object)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def pickled_checkpoint(python: Path, config: Path, folder: Path) -> tuple[Path, Path]:
    """(checkpoint that only full unpickling loads, the file unpickling it would create)."""
    marker = folder / "unpickled"
    return make_checkpoint(python, config, folder / "pickled.ckpt", pickled_object=marker), marker


@pytest.fixture(scope="session")
def tiny_bs(msst_env: Any, workdir: Path) -> tuple[Path, Path]:
    """(config, checkpoint) of the standard tiny BS-Roformer, weights made by msst's own class."""
    config = write_yaml(workdir / "tiny_bs.yaml", tiny_config())
    return config, make_checkpoint(msst_env.python, config, workdir / "tiny_bs.ckpt")


@pytest.fixture(scope="session")
def tiny_segm(msst_env: Any, workdir: Path) -> tuple[Path, Path]:
    """(config, checkpoint) of the variant with the extra mask branch (its own code)."""
    config = write_yaml(workdir / "tiny_segm.yaml", tiny_config(segm_channels=8))
    return config, make_checkpoint(msst_env.python, config, workdir / "tiny_segm.ckpt", code=SEGM_CODE,
                                   model_type="bs_roformer_segm", seed=1)


@pytest.fixture(scope="session")
def tiny_fno(fno_env: Any, workdir: Path) -> tuple[Path, Path]:
    """(config, checkpoint) of the FNO variant: four bands keep its 8 FNOs small."""
    config = write_yaml(workdir / "tiny_fno.yaml", tiny_config(bands=(5, 20, 100, 900), fno_modes=4, fno_hidden=8))
    return config, make_checkpoint(fno_env.python, config, workdir / "tiny_fno.ckpt", code=FNO_CODE,
                                   model_type="bs_roformer_fno", seed=2)


def demo_clip(path: Path, seconds: float, *, offset: float = 1.0, gain: float = 0.8) -> Path:
    """A stretch of the real demo mix as a float WAV (peaks stay below full scale)."""
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    start = int(offset * rate)
    sf.write(str(path), audio[start:start + int(seconds * rate)] * gain, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="session")
def clip3(workdir: Path) -> Path:
    return demo_clip(workdir / "clip3.wav", 3.0)


def offline_hook(folder: Path) -> tuple[Path, Path]:
    """A worker test hook that cuts the worker off the network: every DNS lookup and every IP connect
    fails and is logged. Returns (hook file, log file)."""
    log = folder / "network-attempts.log"
    hook = folder / "offline_hook.py"
    hook.write_text(f'''"""Worker test hook: no network (written by tests/runtimes/conftest.py)."""
import socket

LOG = {str(log)!r}


def _refuse(what):
    with open(LOG, "a") as fh:
        fh.write(what + "\\n")
    raise OSError(101, "network disabled by the test: " + what)


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect %r" % (address,))
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect_ex %r" % (address,))
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = lambda host, *a, **k: _refuse("getaddrinfo %r" % (host,))
''')
    return hook, log


def job(model: dict[str, Any], artifacts: dict[str, Path], input_path: Path, output_dir: Path,
        settings: dict[str, Any] | None = None, fmt: str = "wav") -> dict[str, Any]:
    """A `separate` message as the host sends it."""
    return {"job": uuid.uuid4().hex[:12], "model": model, "artifacts": {k: str(v) for k, v in artifacts.items()},
            "settings": settings or {}, "input": str(input_path), "output_dir": str(output_dir),
            "output_format": fmt, "output_names": {}, "output_template": f"{input_path.stem}_({{stem}}).{fmt}"}


def read_stems(result: dict[str, Any]) -> dict[str, np.ndarray]:
    return {s["name"]: sf.read(s["path"], dtype="float32", always_2d=True)[0] for s in result["stems"]}


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-difference ratio in dB: how closely `estimate` reproduces `reference`."""
    ref = reference.astype(np.float64)
    err = ref - estimate.astype(np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum(err ** 2), 1e-30)))
