#!/usr/bin/env python3
"""`stemsep batch` on the local engine against Ray (issue 21's benchmark), with the default DSP model:

40 short inputs, one model, on this machine: `--engine local`, then `--engine ray` with one actor and with two
(a local Ray instance the CLI starts itself: one node). For each: throughput (inputs per second, from the first
runner being ready to the last input done: env and Ray start-up are reported apart) and the host's overhead
per input: that wall time minus the runner's own seconds per input (client round trip of each job, measured
inside the runner), divided by the inputs. Ray's overhead per input: the one-actor run's wall time minus the
local engine's, divided by the inputs (target <= 50 ms); it holds everything Ray adds once the actors are up:
scheduling, serialization, and its daemons' share of this machine's CPUs (which shows as slower runner time).

Runs the real CLI in a throwaway home that shares the configured env store and caches.

    python scripts/bench/batch_bench.py [--inputs 40] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run(manifest: Path, out: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "envmgr.cli.main", "batch", str(manifest), "-o", str(out),
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=REPO)
    assert proc.stdout is not None
    ready = last = None
    seconds = 0.0
    items = 0
    for line in proc.stdout:
        event, now = json.loads(line), time.monotonic()
        if event["type"] == "actor" and ready is None:
            ready = now
        elif event["type"] == "item":
            assert event["status"] == "done", event
            items += 1
            seconds += event["seconds"]
            last = now
    assert proc.wait() == 0 and ready is not None and last is not None
    wall = last - ready
    return {"inputs": items, "startup_s": ready - started, "wall_s": wall, "inputs_per_s": items / wall,
            "overhead_ms_per_input": 1000 * (wall - seconds) / items, "runner_ms_per_input": 1000 * seconds / items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each input")
    args = parser.parse_args()
    import soundfile as sf

    from envmgr.config import load_config

    shared = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "STEMSEP_HOME": str(root / "home"), "STEMSEP_ENV_STORE": str(shared.env_store),
               "STEMSEP_CACHE_DIR": str(shared.cache_dir), "STEMSEP_UV_CACHE_DIR": str(shared.uv_cache_dir),
               "RAY_DISABLE_USAGE_STATS": "1"}
        audio, rate = sf.read(str(REPO / "scripts" / "demo" / "demo_mix.flac"), dtype="float32")
        frames = int(args.seconds * rate)
        lines = []
        for i in range(args.inputs):
            start = (i * 997) % max(1, len(audio) - frames)
            sf.write(str(root / f"in{i:03d}.flac"), audio[start:start + frames], rate)
            lines.append(json.dumps({"input": f"in{i:03d}.flac"}))
        manifest = root / "manifest.jsonl"
        manifest.write_text("\n".join(lines) + "\n")
        run(manifest, root / "warm", env)  # builds the env once, outside the measurements
        results = {"local": run(manifest, root / "local", env, "--engine", "local"),
                   "ray, 1 actor": run(manifest, root / "ray1", env, "--engine", "ray"),
                   "ray, 2 actors": run(manifest, root / "ray2", env, "--engine", "ray", "--actors-per-node", "2")}
    for name, r in results.items():
        print(f"{name:14} {r['inputs']} inputs  {r['inputs_per_s']:6.2f}/s  wall {r['wall_s']:6.2f} s  "
              f"start-up {r['startup_s']:5.2f} s  runner {r['runner_ms_per_input']:6.1f} ms/input  "
              f"host overhead {r['overhead_ms_per_input']:6.1f} ms/input")
    ray_overhead = 1000 * (results["ray, 1 actor"]["wall_s"] - results["local"]["wall_s"]) / args.inputs
    print(f"Ray's overhead per input: {ray_overhead:.1f} ms (target <= 50 ms)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
