#!/usr/bin/env python3
"""Startup time of `stemsep models list`, side by side with `python -c pass`, in fresh processes.

    python scripts/bench/cli_startup.py [--runs N] [--registry FILE]

Cases (each a new process, median of N runs):
  python -c pass                       the floor: interpreter start
  models list (warm index)             the listing index is cached: no pydantic, no numpy
  models list (cold index)             the index is deleted before each run: full load + validation
  models list --json (warm index)
  models show ID                       full typed registry, routing and settings (no index)
Target: `models list` <= 0.3 s absolute on the dev machine (2 cores). Also checks that a warm list
imports neither pydantic nor numpy nor torch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_S = 0.3


def stemsep_cmd() -> list[str]:
    script = Path(sys.executable).with_name("stemsep")
    if script.exists():
        return [str(script)]
    found = shutil.which("stemsep")
    return [found] if found else [sys.executable, "-m", "envmgr.cli.main"]


def timed(cmd: list[str], env: dict, before=None) -> float:
    if before:
        before()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return took


def median(cmd: list[str], env: dict, runs: int, before=None) -> float:
    timed(cmd, env, before)  # page cache, .pyc files
    return statistics.median(timed(cmd, env, before) for _ in range(runs))


def imported_modules(env: dict) -> set[str]:
    code = ("import sys, runpy; sys.argv = ['stemsep', 'models', 'list', '--json'];\n"
            "import io, contextlib\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n        runpy.run_module('envmgr.cli.main', run_name='__main__')\n"
            "    except SystemExit:\n        pass\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--registry", type=Path, help="registry file to list (default: the packaged one, "
                        "else the test fixture)")
    args = parser.parse_args()

    registry = args.registry
    if registry is None and not (REPO / "registry" / "models.json").exists():
        registry = REPO / "tests" / "fixtures" / "registry" / "valid.json"
    home = Path(tempfile.mkdtemp(prefix="stemsep-bench-"))
    env = dict(os.environ, STEMSEP_HOME=str(home))
    env.pop("STEMSEP_CACHE_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run leaves .pyc files, as on a user's machine
    if registry is not None:
        env["STEMSEP_REGISTRY"] = str(registry)
    else:
        env.pop("STEMSEP_REGISTRY", None)
    index = home / "cache" / "model-index.json"
    cli = stemsep_cmd()
    listing = json.loads(subprocess.run(cli + ["models", "list", "--json"], env=env, capture_output=True,
                                        text=True, check=True).stdout)

    def drop_index() -> None:
        index.unlink(missing_ok=True)

    rows = [
        ("python -c pass", median([sys.executable, "-c", "pass"], env, args.runs)),
        ("models list (warm index)", median(cli + ["models", "list"], env, args.runs)),
        ("models list --json (warm index)", median(cli + ["models", "list", "--json"], env, args.runs)),
        ("models list (cold index)", median(cli + ["models", "list"], env, args.runs, before=drop_index)),
        (f"models show {listing[0]['id']}", median(cli + ["models", "show", listing[0]["id"]], env, args.runs)),
    ]
    base = rows[0][1]
    print(f"registry: {registry or 'packaged registry/models.json'} ({len(listing)} models); "
          f"median of {args.runs} fresh processes; CPU cores: {os.cpu_count()}")
    print(f"{'case':<36} {'seconds':>8} {'x python -c pass':>17}")
    for name, secs in rows:
        print(f"{name:<36} {secs:8.3f} {secs / base:17.1f}")
    modules = imported_modules(env)
    heavy = sorted(m for m in ("pydantic", "numpy", "torch", "jsonschema") if m in modules)
    print(f"warm `models list --json` imports: {', '.join(heavy) if heavy else 'none of pydantic/numpy/torch/jsonschema'}")
    warm, cold = rows[1][1], rows[3][1]
    verdict = "meets" if warm <= TARGET_S else "MISSES"
    print(f"target: models list <= {TARGET_S} s: warm {warm:.3f} s {verdict} it; cold (first run after a "
          f"registry change) {cold:.3f} s")
    shutil.rmtree(home, ignore_errors=True)
    return 0 if warm <= TARGET_S and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
