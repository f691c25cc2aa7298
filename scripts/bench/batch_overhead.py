#!/usr/bin/env python3
"""Host overhead per file when a batch of short files goes through one persistent worker.

Target (issue 4): <= 50 ms per file. For each file, the host's overhead is the wall time from handing
the job to the client until its `result` arrives, minus the worker's own time for the job
(`result.seconds`): job message building, pipe round trips, decoding every progress line, events.
Side by side in the same run, for scale: the same batch with a fresh worker per file (what the
persistent worker saves).

    python scripts/bench/batch_overhead.py [-m MODEL] [--files 20] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def _inputs(folder: Path, count: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"clip_{i:02d}.wav"
        sf.write(path, rng.standard_normal((int(44100 * seconds), 2)).astype(np.float32) * 0.1, 44100)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--model", help="model id (default: the registry's default model)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each file")
    args = parser.parse_args()

    from envmgr.config import load_config
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.jobs.separate import plan_separation
    from envmgr.worker.client import WorkerClient
    from envmgr.worker.code_copy import ensure_worker_code

    config = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = _inputs(folder, args.files, args.seconds)
        plan = plan_separation(files, args.model, output_dir=folder / "out")
        env = EnvManager(config).ensure(request_for_model(plan.model, plan.runtime, config))
        code = ensure_worker_code(config.cache_dir)

        def run(client: WorkerClient, path: Path) -> tuple[float, float]:
            t0 = time.perf_counter()
            result = client.run(plan.job_message(path), lambda event: None)
            wall = time.perf_counter() - t0
            return wall - result["seconds"], wall

        client = WorkerClient(env.python, plan.runtime, code, env_id=env.id)
        client.start()
        run(client, files[0])  # warm-up: model load, first-touch imports
        persistent = [run(client, f) for f in files]
        client.close()

        fresh = []
        for f in files:
            t0 = time.perf_counter()
            c = WorkerClient(env.python, plan.runtime, code, env_id=env.id)
            c.start()
            overhead, _ = run(c, f)
            c.close()
            fresh.append((time.perf_counter() - t0, overhead))

    over = [o for o, _ in persistent]
    wall = [w for _, w in persistent]
    fresh_wall = [w for w, _ in fresh]
    print(f"model {plan.model.id} on {plan.runtime}; {args.files} files of {args.seconds:g} s")
    print(f"persistent worker: host overhead per file  median {statistics.median(over) * 1e3:.1f} ms, "
          f"mean {statistics.mean(over) * 1e3:.1f} ms, max {max(over) * 1e3:.1f} ms "
          f"({'meets' if statistics.mean(over) <= 0.05 else 'MISSES'} the 50 ms target)")
    print(f"persistent worker: wall per file           median {statistics.median(wall) * 1e3:.1f} ms")
    print(f"fresh worker per file: wall per file       median {statistics.median(fresh_wall) * 1e3:.1f} ms "
          f"({statistics.median(fresh_wall) / statistics.median(wall):.1f}x the persistent worker)")


if __name__ == "__main__":
    main()
