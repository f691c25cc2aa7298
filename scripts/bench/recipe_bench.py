"""Recipe runs (issue 16 §3): a 3-model recipe (three copies of the built-in DSP model under their own ids, so three
models to load, and an ensemble of their vocals) on 10 inputs, in this process through the same functions
`stemsep run` calls, in a throwaway STEMSEP_HOME that shares this machine's env store.

Printed, measured against the targets:
- model loads = 3: counted from the events as the adapter caches a model (a job on a worker whose previous job
  was another model, or the worker's first job) — model-major order makes it one per model, not one per input;
- host overhead per step <= 50 ms: the run's wall time less the workers' own job seconds, worker start-ups and
  env checks, divided by the step executions (steps x inputs);
- the cache-hit path (nothing changed) <= 0.5 s for the whole batch: run_recipe with every step a hit (and, for
  reference, preflight + run, and the CLI as a fresh process).

    python scripts/bench/recipe_bench.py [--inputs 10] [--seconds 1.0]
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
sys.path.insert(0, str(REPO))
MODELS = ("bench-dsp-a", "bench-dsp-b", "bench-dsp-c")


def setup(home: Path, inputs: int, seconds: float) -> tuple[Path, list[Path]]:
    import numpy as np
    import soundfile as sf

    from envmgr.config import load_config

    shared = load_config()  # this machine's env store and caches: the light env is built once
    os.environ.update({"STEMSEP_HOME": str(home), "STEMSEP_ENV_STORE": str(shared.env_store),
                       "STEMSEP_CACHE_DIR": str(shared.cache_dir), "STEMSEP_UV_CACHE_DIR": str(shared.uv_cache_dir)})
    packaged = json.loads((REPO / "registry" / "models.json").read_text())
    dsp = next(m for m in packaged["models"] if m["id"] == packaged["default_model"])
    registries = home / "config" / "registries"
    registries.mkdir(parents=True)
    (registries / "bench.json").write_text(json.dumps({"schema_version": "1", "models": [
        {**dsp, "id": model_id, "name": f"bench copy {i}"} for i, model_id in enumerate(MODELS)]}))
    recipe = {"schema_version": 1, "recipes": [{"id": "bench3", "steps": [
        *({"id": f"m{i}", "op": "separate", "inputs": ["mix"], "params": {"model": m}} for i, m in enumerate(MODELS)),
        {"id": "ens", "op": "ensemble", "inputs": [f"m{i}.vocals" for i in range(3)], "params": {"algorithm": "avg_wave"}}],
        "outputs": {"vocals": "ens.vocals", "instrumental": "m0.instrumental"}}]}
    path = home / "bench3.json"
    path.write_text(json.dumps(recipe))
    rng = np.random.default_rng(0)
    files = []
    for i in range(inputs):
        f = home / f"in{i:02d}.wav"
        sf.write(str(f), (rng.standard_normal((int(44100 * seconds), 2)) * 0.1).astype("float32"), 44100)
        files.append(f)
    return path, files


def run_once(recipe_file: Path, files: list[Path], out: Path) -> tuple[float, float, list[tuple[float, dict]]]:
    """(preflight+run seconds, run seconds, timestamped events)."""
    from envmgr.catalog.recipe_files import load_recipe
    from envmgr.config import load_config
    from envmgr.jobs.recipe_run import plan_recipe, run_recipe

    events: list[tuple[float, dict[str, Any]]] = []

    def emit(e: dict[str, Any]) -> None:
        events.append((time.perf_counter(), e))

    started = time.perf_counter()
    config = load_config()
    plan = plan_recipe(load_recipe(str(recipe_file)), files, out, config=config)
    run_started = time.perf_counter()
    run_recipe(plan, emit, config=config)
    ended = time.perf_counter()
    return ended - started, ended - run_started, events


def model_loads(events: list[tuple[float, dict[str, Any]]]) -> int:
    loads, worker, last = 0, None, {}
    for _t, e in events:
        if e["type"] == "worker":
            worker = e["pid"]
        elif e["type"] == "job" and e.get("model"):
            if last.get(worker) != e["model"]:
                loads += 1
            last[worker] = e["model"]
    return loads


def host_overhead(run_seconds: float, events: list[tuple[float, dict[str, Any]]]) -> tuple[float, int]:
    """Per step execution: wall less job seconds, worker start-ups (previous event -> `worker`) and env checks."""
    worker_time = job_time = env_time = 0.0
    previous = events[0][0]
    env_started = None
    for t, e in events:
        if e["type"] == "worker":
            worker_time += t - previous
        elif e["type"] == "result":
            job_time += e["seconds"]
        elif e["type"] == "env" and env_started is None:
            env_started = t
        elif e["type"] == "env_ready" and env_started is not None:
            env_time += t - env_started
            env_started = None
        previous = t
    executions = sum(1 for _t, e in events if e["type"] == "step_input")
    return (run_seconds - worker_time - job_time - env_time) / executions, executions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recipe-bench-") as tmp:
        home = Path(tmp)
        recipe_file, files = setup(home, args.inputs, args.seconds)
        out = home / "out"
        _total, run_s, events = run_once(recipe_file, files, out)
        loads = model_loads(events)
        overhead, executions = host_overhead(run_s, events)
        hit_total, hit_run, hit_events = run_once(recipe_file, files, out)
        assert all(e["cached"] for _t, e in hit_events if e["type"] == "step_input")
        cli_started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "envmgr.cli.main", "run", str(recipe_file), *map(str, files),
                               "-o", str(out), "--json"], capture_output=True, text=True, cwd=REPO, check=False)
        cli_s = time.perf_counter() - cli_started
        assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [(f"model loads (3 models x {args.inputs} inputs)", f"{loads}", "3", loads == 3),
            (f"host overhead per step ({executions} step executions)", f"{overhead * 1000:.1f} ms", "<= 50 ms",
             overhead <= 0.05),
            ("cache-hit path: run_recipe, whole batch", f"{hit_run:.3f} s", "<= 0.5 s", hit_run <= 0.5),
            ("cache-hit path: preflight + run", f"{hit_total:.3f} s", "(reference)", None),
            ("cache-hit path: `stemsep run` as a fresh process", f"{cli_s:.3f} s", "(reference)", None),
            ("first run: run_recipe, whole batch", f"{run_s:.3f} s", "(reference)", None)]
    for what, measured, target, ok in rows:
        verdict = "" if ok is None else ("met" if ok else "NOT MET")
        print(f"{what:<52} {measured:>10}   target {target:<12} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
