"""Our Roformer (stemsep-legacy) vs msst 0.1.0's `demix`, side by side in one run.

    python scripts/bench/inference_bench.py [--model viperx|tiny] [--seconds 6] [--chunk-seconds 2]
        [--repeats 2] [--threads 2] [--rss-model tiny] [--skip-speed] [--skip-rss]

Both sides run as subprocesses in their own uv-built envs (the machine config's torch), on the same
random-weight checkpoint (made by msst's own model class, real config layout), the same input (the
demo mix, tiled), the same native settings and the same torch thread count; runs alternate, and the
best of `--repeats` per side is compared (model loading and imports excluded). Prints:

1. speed: seconds per side, the ratio msst / ours (target >= 1.2 on CPU), and the max abs difference
   of the stems (parity);
2. peak RSS (whole process) for a 10-minute vs a 1-minute input. First the path `stemsep separate`
   really takes: a real worker (`python -m runtimes.worker`, a fresh one per input, in the env the
   runtime definitions build) running a `separate` job for a bs_roformer model (float WAV in, both
   stems, the residual included, written as float WAVs into the staging dir and moved into place);
   its peak is the worker's VmHWM read when the job is done. Then, for comparison, our command line
   in memory (input and output arrays in RAM) and streamed (--stream), and msst's `demix`.
   Target for the worker path: <= 1.2x.

Needs the machine config of the test suite (STEMSEP_FIND_LINKS, STEMSEP_OVERRIDES, ...) to build envs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import yaml  # noqa: E402

from envmgr.config import load_config  # noqa: E402
from envmgr.envs.manager import EnvManager  # noqa: E402
from envmgr.envs.request import request_for_model, request_for_requirements
from envmgr.worker.client import Timeouts, WorkerClient  # noqa: E402
from envmgr.worker.code_copy import ensure_worker_code  # noqa: E402
from registry.model import ModelEntry  # noqa: E402

CONFIGS = REPO / "tests" / "fixtures" / "msst-configs"
VIPERX = CONFIGS / "model_bs_roformer_ep_317_sdr_12.9755.yaml"
MSST_DRIVER = REPO / "tests" / "legacy" / "msst_driver.py"
DEMO_MIX = REPO / "scripts" / "demo" / "demo_mix.flac"
MSST_REQUIREMENTS = ["msst[bs-roformer,mel-band-roformer]==0.1.0"]
MODELS = {
    "viperx": {},  # the published model's true dimensions: dim 512, depth 12, 62 bands, 160 M weights
    "tiny": {"dim": 32, "depth": 2, "heads": 2, "dim_head": 16},
}


class _TupleLoader(yaml.SafeLoader):
    pass


_TupleLoader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node)))


def env_python(requirements: list[str]) -> Path:
    config = load_config()
    manager = EnvManager(config)
    return manager.ensure(request_for_requirements(requirements, runtime="bench", python=config.python, config=config)).python


def bench_model(config: Path, ckpt: Path) -> dict:
    """A registry entry (JSON form) for the benchmark's checkpoint on stemsep-legacy."""
    return ModelEntry.model_validate({
        "id": "bench-bs-roformer", "name": "benchmark BS-Roformer", "architecture": "BS-Roformer",
        "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "bs_roformer"},
        "capabilities": {"stems": ["vocals", "instrumental"], "roles": ["separation"], "supports_stereo": True},
        "artifacts": {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                      "config": {"kind": "config", "filename": config.name}},
    }).model_dump(mode="json")


def legacy_env_python() -> Path:
    """The env `stemsep separate` builds for a Roformer on stemsep-legacy (from the runtime definitions)."""
    config = load_config()
    entry = ModelEntry.model_validate({**bench_model(Path("c.yaml"), Path("m.ckpt")), "artifacts": {}})
    return EnvManager(config).ensure(request_for_model(entry, "stemsep-legacy", config)).python


def worker_peak_rss(python: Path, model: dict, artifacts: dict[str, Path], wav: Path, out: Path, threads: int) -> float:
    """Peak RSS (MiB) of a fresh worker that ran one `separate` job on `wav`, as `stemsep separate` sends it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # passed on to the worker, as the CLI passes the user's
    worker = WorkerClient(python, "stemsep-legacy", ensure_worker_code(load_config().cache_dir),
                          timeouts=Timeouts(silence=600.0))
    worker.start()
    try:
        names = {stem: f"{wav.stem}_({stem}).wav" for stem in model["capabilities"]["stems"]}
        worker.run({"job": f"bench-{wav.stem}", "model": model, "artifacts": {k: str(v) for k, v in artifacts.items()},
                    "settings": {}, "input": str(wav), "output_dir": str(out), "output_format": "wav",
                    "output_names": names, "output_template": f"{wav.stem}_({{stem}}).wav"})
        status = Path(f"/proc/{worker.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    finally:
        worker.close()
        for path in out.glob("*.wav"):
            path.unlink()


def write_config(dst: Path, model: str, chunk: int) -> Path:
    data = yaml.load(VIPERX.read_text(), Loader=_TupleLoader)
    data["model"].update(MODELS[model])
    data["audio"]["chunk_size"] = chunk
    dst.write_text(yaml.dump(data, Dumper=yaml.Dumper))
    return dst


def make_input(path: Path, seconds: float) -> Path:
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    frames = int(seconds * rate)
    mix = np.ascontiguousarray(np.tile(audio, (frames // len(audio) + 1, 1))[:frames])
    if path.suffix == ".npy":
        np.save(path, mix)
    else:
        sf.write(path, mix, rate, subtype="FLOAT")
    return path


def run(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(python: Path, config: Path, ckpt: Path, mix: Path, out: Path, threads: int, *extra: str) -> dict:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(REPO)}
    return run([str(python), "-m", "runtimes.legacy.roformer", "separate", "--model-type", "bs_roformer", "--config",
                str(config), "--checkpoint", str(ckpt), "--input", str(mix), "--out-dir", str(out), "--device", "cpu",
                "--threads", str(threads), *extra], env)


def msst(python: Path, config: Path, ckpt: Path, mix: Path, out: Path, threads: int) -> dict:
    return run([str(python), str(MSST_DRIVER), "demix", "--model-type", "bs_roformer", "--config", str(config),
                "--checkpoint", str(ckpt), "--input", str(mix), "--out-dir", str(out), "--threads", str(threads)])


def make_checkpoint(msst_py: Path, config: Path, out: Path) -> Path:
    """Random weights in msst's own BSRoformer, saved as its state dict."""
    subprocess.run([str(msst_py), str(MSST_DRIVER), "make-checkpoint", "--model-type", "bs_roformer", "--config",
                    str(config), "--out", str(out)], check=True, capture_output=True)
    return out


def max_diff(a: Path, b: Path) -> float:
    return max(float(np.abs(np.load(f) - np.load(b / f.name)).max()) for f in a.glob("*.npy"))


def speed(args: argparse.Namespace, legacy: Path, msst_py: Path, tmp: Path) -> None:
    config = write_config(tmp / "speed.yaml", args.model, int(args.chunk_seconds * 44100))
    ckpt = make_checkpoint(msst_py, config, tmp / "speed.ckpt")
    mix = make_input(tmp / "speed.npy", args.seconds)
    times: dict[str, list[float]] = {"ours": [], "msst": []}
    for i in range(args.repeats):
        times["msst"].append(msst(msst_py, config, ckpt, mix, tmp / "msst", args.threads)["seconds"])
        times["ours"].append(ours(legacy, config, ckpt, mix, tmp / "ours", args.threads)["seconds"])
        print(f"  repeat {i + 1}: msst {times['msst'][-1]:.2f} s, ours {times['ours'][-1]:.2f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    print(f"speed ({args.model} dims, {args.seconds:g} s input, chunk {args.chunk_seconds:g} s, config num_overlap/"
          f"batch_size, {args.threads} threads): msst {best['msst']:.2f} s, ours {best['ours']:.2f} s, "
          f"ratio msst/ours = {best['msst'] / best['ours']:.2f}x (target >= 1.2x); "
          f"max abs stem difference {max_diff(tmp / 'ours', tmp / 'msst'):.2e}")


def rss(args: argparse.Namespace, legacy: Path, msst_py: Path, tmp: Path) -> None:
    config = write_config(tmp / "rss.yaml", args.rss_model, 352800)  # the real 8 s chunk
    ckpt = make_checkpoint(msst_py, config, tmp / "rss.ckpt")
    model = bench_model(config, ckpt)
    rows = {}
    for minutes in (1, 10):
        npy, wav = make_input(tmp / f"{minutes}m.npy", minutes * 60), make_input(tmp / f"{minutes}m.wav", minutes * 60)
        rows[minutes] = {
            "worker (stemsep separate)": worker_peak_rss(legacy, model, {config.name: config, ckpt.name: ckpt}, wav,
                                                         tmp / "rss_worker", args.threads),
            "ours in memory": ours(legacy, config, ckpt, npy, tmp / "rss_ours", args.threads)["peak_rss_mib"],
            "ours streamed": ours(legacy, config, ckpt, wav, tmp / "rss_stream", args.threads, "--stream")["peak_rss_mib"],
            "msst demix": msst(msst_py, config, ckpt, npy, tmp / "rss_msst", args.threads)["peak_rss_mib"],
        }
        npy.unlink()
        wav.unlink()
    buffer = 10 * 60 * 44100 * 2 * 4 / 2**20
    print(f"peak RSS, {args.rss_model} dims, 8 s chunks (one 10-min stereo float32 buffer = {buffer:.0f} MiB):")
    for name in rows[1]:
        one, ten = rows[1][name], rows[10][name]
        target = "   (target <= 1.2x)" if name.startswith("worker") else ""
        print(f"  {name:26s} 1 min {one:7.0f} MiB   10 min {ten:7.0f} MiB   ratio {ten / one:.2f}x{target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="viperx")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--chunk-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rss-model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    legacy, msst_py = legacy_env_python(), env_python(MSST_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="roformer-bench-") as tmp:
        if not args.skip_speed:
            speed(args, legacy, msst_py, Path(tmp))
        if not args.skip_rss:
            rss(args, legacy, msst_py, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
