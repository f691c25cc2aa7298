#!/usr/bin/env python3
"""The same tiny BS-Roformer checkpoint on msst, audio-separator and stemsep-legacy, side by side in
one run: worker start (spawn -> ready), first job (model load + separation), warm job (model kept
loaded), real-time factor of the warm job; and what a model's own code costs on msst (a code-artifact
variant vs the standard class, first job). Ratios are against msst, measured in the same run.

Uses the machine config (STEMSEP_*), builds the envs if needed, runs workers single-threaded unless
OMP_NUM_THREADS says otherwise. Timings on a shared machine are noisy: compare ratios, rerun.

    python scripts/bench/runtimes_bench.py [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the test audio (<= 9)")
    parser.add_argument("--repeats", type=int, default=3, help="warm jobs per runtime (median reported)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from envmgr.config import load_config
    from envmgr.worker.code_copy import ensure_worker_code
    from tests.runtimes.conftest import (SEGM_CODE, demo_clip, job, make_checkpoint, model_entry, runtime_env,
                                         sha256, start_worker, tiny_config, write_yaml)

    code = ensure_worker_code(load_config().cache_dir)
    runtimes = ["msst", "audio-separator", "stemsep-legacy"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        envs = {rt: runtime_env(rt) for rt in runtimes}
        config = write_yaml(work / "tiny.yaml", tiny_config())
        ckpt = make_checkpoint(envs["msst"].python, config, work / "tiny.ckpt")
        segm_config = write_yaml(work / "segm.yaml", tiny_config(segm_channels=8))
        segm_ckpt = make_checkpoint(envs["msst"].python, segm_config, work / "segm.ckpt", code=SEGM_CODE,
                                    model_type="bs_roformer_segm")
        clip = demo_clip(work / "clip.wav", args.seconds)
        rows = {}
        for rt in runtimes:
            settings = {"msst": {"inference": {"num_overlap": 2}}, "audio-separator": {"mdxc_params": {"overlap": 2}},
                        "stemsep-legacy": {"inference": {"num_overlap": 2}}}[rt]
            model = model_entry("bench-tiny-bs", [rt])
            model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                                  "config": {"kind": "config", "filename": config.name}}
            arts = {ckpt.name: ckpt, config.name: config}
            t0 = time.perf_counter()
            client = start_worker(envs[rt], rt, code)
            ready = time.perf_counter() - t0
            try:
                first = _timed(lambda: client.run(job(model, arts, clip, work / rt / "0", settings)))
                warm = statistics.median(_timed(lambda i=i: client.run(job(model, arts, clip, work / rt / str(i),
                                                                               settings)))
                                         for i in range(1, args.repeats + 1))
                if rt == "msst":
                    variant = dict(model, runtime={**model["runtime"], "model_type": "bs_roformer_segm"})
                    variant["artifacts"] = {"primary": {"kind": "checkpoint", "filename": segm_ckpt.name},
                                            "config": {"kind": "config", "filename": segm_config.name},
                                            "additional": [{"kind": "code", "filename": SEGM_CODE.name,
                                                            "model_type": "bs_roformer_segm", "class_name": "BSRoformer",
                                                            "sha256": sha256(SEGM_CODE)}]}
                    varts = {segm_ckpt.name: segm_ckpt, segm_config.name: segm_config, SEGM_CODE.name: SEGM_CODE}
                    variant_first = _timed(lambda: client.run(job(variant, varts, clip, work / "variant", settings)))
            finally:
                client.close()
            rows[rt] = (ready, first, warm)
            if rt == "msst":
                rows["msst + code artifact"] = (None, variant_first, None)

    base = rows["msst"]
    print(f"tiny BS-Roformer (dim 32, depth 2, 4 s chunks, overlap 2), {args.seconds:g} s of audio, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"{'runtime':24} {'ready s':>8} {'first job s':>12} {'warm job s':>11} {'x realtime':>11} "
          f"{'first/msst':>11} {'warm/msst':>10}")
    for name, (ready, first, warm) in rows.items():
        print(f"{name:24} {_f(ready):>8} {_f(first):>12} {_f(warm):>11} "
              f"{_f(args.seconds / warm if warm else None):>11} {_f(first / base[1]):>11} "
              f"{_f(warm / base[2] if warm else None):>10}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
