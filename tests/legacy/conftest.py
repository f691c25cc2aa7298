"""Fixtures for our Roformer tests: two real uv-built envs (stemsep-legacy's torch set, msst 0.1.0),
scaled-down copies of the real MSST configs, random-weight checkpoints made by msst's own model
class, a few seconds of the demo mix, and runners for both sides as subprocesses exchanging files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml

from envmgr.envs.runtime_defs import LEGACY_TORCH_LIBS, RUNTIMES
from tests.conftest import REPO
from tests.support.envs import env_python


# The stemsep-legacy torch env's requirements, as the env manager builds it (runtime_defs).
LEGACY_REQUIREMENTS = ["torch", *RUNTIMES["stemsep-legacy"].requires, *LEGACY_TORCH_LIBS]
MSST_REQUIREMENTS = ["msst[bs-roformer,mel-band-roformer]==0.1.0"]
CONFIGS = REPO / "tests" / "fixtures" / "msst-configs"
VIPERX = CONFIGS / "model_bs_roformer_ep_317_sdr_12.9755.yaml"
KIM_MEL = CONFIGS / "model_mel_band_roformer_ep_3005_sdr_11.4360.yaml"
KJ_MEL = CONFIGS / "config_vocals_mel_band_roformer_kj.yaml"
MSST_DRIVER = Path(__file__).with_name("msst_driver.py")
DEMO_MIX = REPO / "scripts" / "demo" / "demo_mix.flac"
# Small enough for 2 CPU cores, same structure as the published models.
TINY = {"model.dim": 32, "model.depth": 2, "model.heads": 2, "model.dim_head": 16, "audio.chunk_size": 44100}


class _TupleLoader(yaml.SafeLoader):
    pass


_TupleLoader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node)))


def write_config(src: Path, dst: Path, changes: dict[str, Any]) -> Path:
    """Copy an MSST config with `section.key` changes (None deletes); tuples keep their !!python/tuple tag."""
    data = yaml.load(src.read_text(), Loader=_TupleLoader)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        if value is None:
            data[section].pop(key, None)
        else:
            data.setdefault(section, {})[key] = value
    dst.write_text(yaml.dump(data, Dumper=yaml.Dumper))
    return dst


def demo_input(path: Path, seconds: float, *, offset: float = 2.0, channels: int = 2) -> Path:
    """A stretch of the real demo mix (44.1 kHz) as (frames, channels) float32 .npy."""
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    start = int(offset * rate)
    piece = audio[start:start + int(seconds * rate)]
    piece = piece[:, :1] if channels == 1 else piece
    np.save(path, np.ascontiguousarray(piece))
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    out_dir: Path

    def stems(self) -> dict[str, np.ndarray]:
        return {p.stem: np.load(p) for p in sorted(self.out_dir.glob("*.npy"))}

    def result(self) -> dict[str, Any]:
        return json.loads((self.out_dir / "result.json").read_text())

    def error(self) -> dict[str, Any]:
        assert self.returncode == 2, f"expected a clean error exit, got {self.returncode}: {self.stderr[-2000:]}"
        return json.loads(self.stderr.strip().splitlines()[-1])


def _run(cmd: list[str], out_dir: Path, env: dict[str, str] | None = None, timeout: int = 600) -> Run:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    return Run(proc.returncode, proc.stdout, proc.stderr, out_dir)


def ours_env() -> dict[str, str]:
    # Only the repo on the path: the env sees our `runtimes` package and its own site-packages.
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(REPO)}


def run_ours(python: Path, config: Path, checkpoint: Path, mix: Path, out_dir: Path, *extra: str) -> Run:
    cmd = [str(python), "-m", "runtimes.legacy.roformer", "separate", "--config", str(config), "--checkpoint",
           str(checkpoint), "--input", str(mix), "--out-dir", str(out_dir), "--device", "cpu", *extra]
    return _run(cmd, out_dir, env=ours_env())


class MsstDriver:
    """One long-lived msst driver process (`serve` mode): msst's imports cost ~15 s, paid once."""

    def __init__(self, python: Path) -> None:
        self.proc = subprocess.Popen([str(python), str(MSST_DRIVER), "serve"], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def __call__(self, *args: str) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(shlex.join(args) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@result "):
                answer = json.loads(line[len("@@result "):])
                assert answer["ok"], f"msst driver failed:\n{answer['error'][-3000:]}"
                return
        raise AssertionError(f"msst driver exited with {self.proc.wait()}")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def make_checkpoint(msst: MsstDriver, model_type: str, config: Path, out: Path, *extra: str) -> Path:
    msst("make-checkpoint", "--model-type", model_type, "--config", str(config), "--out", str(out), *extra)
    return out


def msst_demix(msst: MsstDriver, model_type: str, config: Path, checkpoint: Path, mix: Path, out_dir: Path,
               *extra: str) -> dict[str, np.ndarray]:
    msst("demix", "--model-type", model_type, "--config", str(config), "--checkpoint", str(checkpoint), "--input",
         str(mix), "--out-dir", str(out_dir), *extra)
    return Run(0, "", "", out_dir).stems()


def ours_ok(run: Run) -> dict[str, np.ndarray]:
    assert run.returncode == 0, f"our Roformer failed:\n{run.stderr[-3000:]}"
    return run.stems()


@pytest.fixture(scope="session")
def legacy_python(stemsep_home: Path) -> Path:
    return env_python(LEGACY_REQUIREMENTS)


@pytest.fixture(scope="session")
def msst(stemsep_home: Path):
    driver = MsstDriver(env_python(MSST_REQUIREMENTS))
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roformer")


@pytest.fixture(scope="session")
def tiny_bs(msst: MsstDriver, workdir: Path) -> tuple[Path, Path]:
    """The viperx BS-Roformer layout scaled down: (config, checkpoint made by msst's class)."""
    config = write_config(VIPERX, workdir / "tiny_bs.yaml", {**TINY, "inference.batch_size": 2})
    return config, make_checkpoint(msst, "bs_roformer", config, workdir / "tiny_bs.ckpt")


@pytest.fixture(scope="session")
def tiny_mel(msst: MsstDriver, workdir: Path) -> tuple[Path, Path]:
    """Kim's Mel-Band-Roformer (ep_3005) layout scaled down: (config, checkpoint)."""
    config = write_config(KIM_MEL, workdir / "tiny_mel.yaml", {**TINY, "inference.batch_size": 2})
    return config, make_checkpoint(msst, "mel_band_roformer", config, workdir / "tiny_mel.ckpt")


@pytest.fixture(scope="session")
def mix3(workdir: Path) -> Path:
    """3.2 s of the demo mix: long enough for reflect padding and several batches."""
    return demo_input(workdir / "mix3.npy", 3.2)


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert sorted(a) == sorted(b), f"stems differ: {sorted(a)} vs {sorted(b)}"
    for name in a:
        assert a[name].shape == b[name].shape, f"{name}: {a[name].shape} vs {b[name].shape}"
    return max(float(np.abs(a[n].astype(np.float64) - b[n]).max()) for n in a)

