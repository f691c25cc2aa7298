#!/usr/bin/env python3
"""Time from `separate` start to the first progress event, with a warm env, vs the worker's import floor.

Target (issue 4): first progress <= floor + 0.3 s, where the floor is `python -c "import <runtime
libs>"` in the same env (what any worker must pay before it can do anything). Measured side by side:
- floor: the env's interpreter importing the runtime's libraries (its health-check modules);
- api: `plan_separation` + `run_separation` called in this process (registry load, env lookup,
  worker code hash, spawn, hello, ready, job) until the first `progress` event;
- cli: a fresh `stemsep separate --json` process until its first `progress` line (adds the host's
  own interpreter start and CLI imports); the worker it ran last time for the same model arguments
  starts before planning (envmgr.worker.prewarm), as on a user's machine from the second run on;
- cli-cold: the same with `STEMSEP_PREWARM=0`: a first run, or prewarm turned off.
Each is the median of --runs runs (after one warm-up); the env is built first if needed.

    python scripts/bench/separate_latency.py [-m MODEL | --tiny-roformer] [--runs 7]

`--tiny-roformer`: a torch model instead of the default DSP one, as community models are: a tiny
BS-Roformer (random weights made by msst's own class, the published config's layout) on
stemsep-legacy's torch env, registered in a throwaway home's overlay registry with its files imported
into the model store (envs and caches are the configured ones). Its worker floor includes `import torch`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo" / "demo_mix.flac"


def _floor(python: Path, modules: tuple[str, ...]) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-s", "-c", "import " + ", ".join(modules)], check=True)
    return time.perf_counter() - t0


def _api(model: str | None, out: Path) -> float:
    from envmgr.jobs.separate import plan_separation, run_separation

    t0 = time.perf_counter()
    first: list[float] = []

    def emit(event: dict) -> None:
        if event["type"] == "progress" and not first:
            first.append(time.perf_counter() - t0)

    run_separation(plan_separation([DEMO], model, output_dir=out), emit)
    return first[0]


def _cli(model: str | None, out: Path, prewarm: bool = True) -> float:
    cmd = [str(Path(sys.executable).with_name("stemsep")), "separate", "--json", str(DEMO), "-o", str(out)]
    if model:
        cmd += ["-m", model]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "STEMSEP_PREWARM": str(prewarm)})
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and json.loads(line)["type"] == "progress":
            first = time.perf_counter() - t0
    if proc.wait() != 0 or first is None:
        sys.exit(f"`{' '.join(cmd)}` failed")
    return first


def _tiny_roformer(home: Path) -> str:
    """Register a tiny BS-Roformer in a throwaway home (shared envs and caches); return its model id."""
    sys.path.insert(0, str(REPO / "scripts" / "bench"))
    from inference_bench import MSST_REQUIREMENTS, bench_model, env_python, make_checkpoint, write_config

    from envmgr.artifacts import ArtifactStore
    from envmgr.config import load_config
    from registry.model import ModelEntry

    shared = load_config()
    config_file = write_config(home / "tiny.yaml", "tiny", 44100)
    ckpt = make_checkpoint(env_python(MSST_REQUIREMENTS), config_file, home / "tiny.ckpt")
    entry = bench_model(config_file, ckpt)
    for artifact in (entry["artifacts"]["primary"], entry["artifacts"]["config"]):
        artifact["sha256"] = hashlib.sha256((home / artifact["filename"]).read_bytes()).hexdigest()
    (home / "config" / "registries").mkdir(parents=True)
    (home / "config" / "registries" / "bench.json").write_text(json.dumps({"schema_version": "1", "models": [entry]}))
    os.environ.update(STEMSEP_HOME=str(home), STEMSEP_ENV_STORE=str(shared.env_store),
                      STEMSEP_CACHE_DIR=str(shared.cache_dir), STEMSEP_UV_CACHE_DIR=str(shared.uv_cache_dir))
    typed = ModelEntry.model_validate(entry)
    with ArtifactStore(load_config().model_store) as store:
        for artifact in typed.artifacts.all():
            store.import_file(typed, artifact, home / artifact.filename)
    return entry["id"]


def main() -> None:
    # Measure as on a user's machine, where Python caches bytecode: the warm-up run leaves .pyc files
    # (for the host's editable install and the env's packages), and the floor gets the same benefit.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--model", help="model id (default: the registry's default model)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tiny-roformer", action="store_true", help="time a torch model (see above)")
    args = parser.parse_args()
    if args.tiny_roformer:
        args.model = _tiny_roformer(Path(tempfile.mkdtemp(prefix="stemsep-latency-")))

    from envmgr.config import load_config
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.envs.runtime_defs import RUNTIMES
    from envmgr.jobs.separate import plan_separation

    config = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_separation([DEMO], args.model, output_dir=Path(tmp))
        req = request_for_model(plan.model, plan.runtime, config)
        env = EnvManager(config).ensure(req)  # warm env: built once, not timed
        modules = req.health_modules or RUNTIMES[plan.runtime].health_modules
        if env.torch:  # the worker's `ready` imports torch too
            modules = (*modules, "torch")
        results: dict[str, list[float]] = {"floor": [], "api": [], "cli": [], "cli-cold": []}
        for i in range(args.runs + 1):  # the first round warms caches and is dropped
            timings = {"floor": _floor(env.python, modules), "api": _api(args.model, Path(tmp)),
                       "cli": _cli(args.model, Path(tmp)), "cli-cold": _cli(args.model, Path(tmp), prewarm=False)}
            if i:
                for key, value in timings.items():
                    results[key].append(value)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"model {plan.model.id} on {plan.runtime}, env {env.id}; imports: {', '.join(modules)}")
    print(f"median of {args.runs} runs (seconds):")
    print(f"  floor     python -c 'import {', '.join(modules)}'   {med['floor']:.3f}")
    for key, label in (("api", "separate() -> first progress (in-process)"),
                       ("cli", "`stemsep separate` start -> first progress"),
                       ("cli-cold", "the same, prewarm off (or a first run)")):
        over = med[key] - med["floor"]
        verdict = "meets" if over <= 0.3 else "MISSES"
        print(f"  {key:<8}  {label:<45} {med[key]:.3f}   floor + {over:.3f} s  ({med[key] / med['floor']:.2f}x floor; "
              f"{verdict} the floor + 0.3 s target)")


if __name__ == "__main__":
    main()
