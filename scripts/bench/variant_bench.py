"""Our HyperACE / FNO BS-Roformers (stemsep-legacy) vs the published code, side by side (issue 18).

    python scripts/bench/variant_bench.py --variant hyperace_v1|hyperace_v2|fno [--published PATH/bs_roformer.py]
        [--seconds 6] [--chunk-seconds 2] [--repeats 2] [--threads 2] [--rss-seconds 10,60] [--skip-rss]

One tiny-but-realistic checkpoint per variant: the real STFT and band split (n_fft 2048, hop 441, viperx's 62
bands), tiny transformer dims (dim 32, depth 2), random weights in the variant's real key layout (made by the
matrix's `own-roformer` maker in stemsep-legacy's env: tests/matrix/make_models.py). Every measurement is a
fresh process; runs alternate and the best of `--repeats` per side counts (imports and model loading excluded).

1. speed (only with --published): the same checkpoint, input (the demo mix, tiled), chunk size, overlap and
   torch thread count; ours is `python -m runtimes.legacy.roformer separate`, the published code runs in
   msst 0.1.0's env (neuraloperator==1.0.2 added for FNO) through msst's own `demix`, loaded as
   tests/legacy/variant_goldens.py loads it for the golden data. Prints both times, published / ours (target
   >= 1.2x) and the max abs difference of the stems. The published file is read where it lies; nothing of it
   is written into the repository.
2. peak RSS of ours, streamed (--stream, the path a worker takes) at two input lengths: their ratio (target:
   flat, <= 1.2x, as for the standard Roformers).

Without --published only ours is measured (its time and both RSS figures), and the script says so.
Needs the machine config of the test suite (source /work/tools/cienv.sh on the dev machine) to build envs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MAKE_MODELS = REPO / "tests" / "matrix" / "make_models.py"
MSST_REQUIREMENTS = ["msst[bs-roformer,mel-band-roformer]==0.1.0"]
FNO_PIN = "neuraloperator==1.0.2"
VIPERX_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
MODEL_TYPES = {"hyperace_v1": "bs_roformer_hyperace", "hyperace_v2": "bs_roformer_hyperace_v2", "fno": "bs_roformer_fno"}


def config_data(variant: str, chunk: int) -> dict[str, Any]:
    """Only keys the published constructors take (their signatures differ from msst's)."""
    model = {"dim": 32, "depth": 2, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
             "freq_transformer_depth": 1, "freqs_per_bands": VIPERX_BANDS, "dim_head": 16, "heads": 2,
             "stft_n_fft": 2048, "stft_hop_length": 441, "stft_win_length": 2048, "mask_estimator_depth": 2,
             "mlp_expansion_factor": 4}
    return {"audio": {"chunk_size": chunk, "sample_rate": 44100, "num_channels": 2},
            "model": model,
            "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals",
                         "model_type": MODEL_TYPES[variant], "use_amp": True},
            "inference": {"batch_size": 1, "num_overlap": 2}}


# --- run inside msst's env: the published code through msst's demix -------------------------------------------


def published_demix(args: argparse.Namespace) -> None:
    import resource
    import time

    import numpy as np
    import torch
    from msst.utils.model_utils import demix
    from msst.utils.settings import load_config

    sys.path.insert(0, str(REPO))
    from tests.legacy.variant_goldens import _load_published

    torch.set_num_threads(args.threads)
    config = load_config("bs_roformer", args.config)
    with tempfile.TemporaryDirectory() as scratch:
        module = _load_published(args.variant, Path(args.code), Path(scratch))
    cls = next(getattr(module, n) for n in ("BSRoformer", "BSRoformer_FNO") if hasattr(module, n))
    started = time.perf_counter()
    model = cls(**dict(config.model)).eval()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if isinstance(v, torch.Tensor)},
                                                strict=False)
    if missing or unexpected:
        raise SystemExit(f"the checkpoint does not fit the published code: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    loaded = time.perf_counter()
    mix = np.load(args.input).T
    with torch.inference_mode():
        stems = demix(config, model, mix, torch.device("cpu"), "bs_roformer", pbar=False)
    done = time.perf_counter()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        np.save(out / f"{name}.npy", np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T))
    print(json.dumps({"stems": list(stems), "load_seconds": loaded - started, "seconds": done - loaded,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# --- the host side ---------------------------------------------------------------------------------------------


def envs(variant: str, published: bool) -> tuple[Path, Path | None]:
    """(stemsep-legacy's env python as `stemsep separate` builds it, msst's with the variant's extra pin)."""
    sys.path.insert(0, str(REPO))
    from envmgr.config import load_config
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model, request_for_requirements
    from registry.model import ModelEntry

    config = load_config()
    manager = EnvManager(config)
    entry = ModelEntry.model_validate({
        "id": "bench-variant", "name": "benchmark Roformer variant", "architecture": "BS-Roformer",
        "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": MODEL_TYPES[variant]},
        "capabilities": {"stems": ["vocals", "other"], "roles": ["separation"], "supports_stereo": True},
        "requirements": {"torch": {"required": True}}})
    legacy = manager.ensure(request_for_model(entry, "stemsep-legacy", config)).python
    if not published:
        return legacy, None
    requirements = MSST_REQUIREMENTS + ([FNO_PIN] if variant == "fno" else [])
    msst = manager.ensure(request_for_requirements(requirements, runtime="bench", python=config.python,
                                                   config=config)).python
    return legacy, msst


def run(cmd: list[str]) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_checkpoint(legacy: Path, variant: str, config: Path, out: Path) -> Path:
    specs = out.with_suffix(".json")
    specs.write_text(json.dumps([{"kind": "own-roformer", "model_type": MODEL_TYPES[variant], "config": str(config),
                                  "out": str(out), "seed": 18}]))
    proc = subprocess.run([str(legacy), str(MAKE_MODELS), str(specs)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    if proc.returncode:
        raise SystemExit(f"making the checkpoint failed:\n{proc.stderr[-3000:]}")
    return out


def ours(legacy: Path, variant: str, config: Path, ckpt: Path, mix: Path, out: Path, threads: int,
         *extra: str) -> dict[str, Any]:
    return run([str(legacy), "-m", "runtimes.legacy.roformer", "separate", "--model-type", MODEL_TYPES[variant],
                "--config", str(config), "--checkpoint", str(ckpt), "--input", str(mix), "--out-dir", str(out),
                "--device", "cpu", "--threads", str(threads), *extra])


def max_diff(a: Path, b: Path) -> float:
    import numpy as np

    common = [f for f in a.glob("*.npy") if (b / f.name).exists()]
    if not common:
        return float("nan")
    return max(float(np.abs(np.load(f) - np.load(b / f.name)).max()) for f in common)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(MODEL_TYPES), default="hyperace_v1")
    parser.add_argument("--published", type=Path, help="the variant's published bs_roformer.py (read, never copied)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--chunk-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rss-seconds", default="10,60", help="two input lengths for the peak-RSS ratio")
    parser.add_argument("--skip-rss", action="store_true")
    sub = parser.add_subparsers(dest="command")
    inner = sub.add_parser("published-demix", help="(internal: runs in msst's env)")
    for name in ("--variant", "--code", "--config", "--checkpoint", "--input", "--out-dir"):
        inner.add_argument(name, required=True)
    inner.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    if args.command == "published-demix":
        published_demix(args)
        return 0
    if args.published and not args.published.is_file():
        parser.error(f"--published {args.published}: no such file")

    import yaml

    sys.path.insert(0, str(Path(__file__).parent))  # the demo mix tiled to a length, as .npy or float WAV:
    from inference_bench import make_input

    legacy, msst = envs(args.variant, bool(args.published))
    with tempfile.TemporaryDirectory(prefix="variant-bench-") as scratch:
        tmp = Path(scratch)
        config = tmp / f"{args.variant}.yaml"
        config.write_text(yaml.dump(config_data(args.variant, int(args.chunk_seconds * 44100)), Dumper=yaml.Dumper))
        ckpt = make_checkpoint(legacy, args.variant, config, tmp / f"{args.variant}.ckpt")
        mix = make_input(tmp / "speed.npy", args.seconds)
        times: dict[str, list[float]] = {"ours": [], "published": []}
        for i in range(args.repeats):
            if msst:
                times["published"].append(run([
                    str(msst), __file__, "published-demix", "--variant", args.variant, "--code", str(args.published),
                    "--config", str(config), "--checkpoint", str(ckpt), "--input", str(mix), "--out-dir",
                    str(tmp / "published"), "--threads", str(args.threads)])["seconds"])
            times["ours"].append(ours(legacy, args.variant, config, ckpt, mix, tmp / "ours", args.threads)["seconds"])
            print(f"  repeat {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)
        best = {k: min(v) for k, v in times.items() if v}
        head = (f"speed ({args.variant}, tiny dims, real STFT and bands, {args.seconds:g} s input, chunk "
                f"{args.chunk_seconds:g} s, overlap 2, {args.threads} threads): ours {best['ours']:.2f} s")
        if msst:
            print(f"{head}, published {best['published']:.2f} s, ratio published/ours = "
                  f"{best['published'] / best['ours']:.2f}x (target >= 1.2x); max abs stem difference "
                  f"{max_diff(tmp / 'ours', tmp / 'published'):.2e}")
        else:
            print(f"{head}; the comparison needs --published PATH (the variant's published bs_roformer.py)")
        if not args.skip_rss:
            lengths = [float(s) for s in args.rss_seconds.split(",")]
            peaks = []
            for seconds in lengths:
                wav = make_input(tmp / f"rss-{seconds:g}.wav", seconds)
                peaks.append(ours(legacy, args.variant, config, ckpt, wav, tmp / "rss", args.threads,
                                  "--stream")["peak_rss_mib"])
                wav.unlink()
            print("peak RSS of ours, streamed: " + ", ".join(f"{s:g} s {p:.0f} MiB" for s, p in zip(lengths, peaks))
                  + f"; ratio {peaks[-1] / peaks[0]:.2f}x (target: flat, <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
