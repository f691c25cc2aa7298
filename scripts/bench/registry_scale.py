#!/usr/bin/env python3
"""A large user overlay: `stemsep models list` cold (validate + index) and warm, with peak RSS, in fresh processes.

    python scripts/bench/registry_scale.py [--models 10000] [--models 34000 ...] [--runs 3] [--keep DIR]

For each size, an overlay `<STEMSEP_HOME>/config/registries/scale.json` is generated from the packaged
registry's real entries, cloned round-robin with new ids, names and checkpoint filenames (per-user fine-tunes
look like this: the same architectures and runtimes, their own files), so every clone passes the rules the
originals pass. Then, each in a new process, median of `--runs`:
  models list (first)    caches removed before each run: read, validate and index every entry
  models list (cached)   the listing index from the run before
and each process's peak RSS (its own getrusage, via wait4). The packaged registry alone is measured beside
it. Targets (issue 15): 10,000 models validated and indexed <= 5 s, listed after that <= 0.3 s, <= 200 MB.
Exit status 1 when a 10,000-model measurement misses a target (larger sizes are reported, not judged).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "registry" / "models.json"
TARGET_FIRST_S, TARGET_CACHED_S, TARGET_RSS_MB, TARGET_SIZE = 5.0, 0.3, 200.0, 10_000


def stemsep_cmd() -> list[str]:
    script = Path(sys.executable).with_name("stemsep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "envmgr.cli.main"]


def clone_models(count: int) -> Iterator[dict]:
    """`count` entries cloned from the packaged registry's, each with its own id, name and primary filename."""
    originals = json.loads(PACKAGED.read_text(encoding="utf-8"))["models"]
    for n in range(count):
        entry = copy.deepcopy(originals[n % len(originals)])
        entry["id"] = f"user-ft-{n:06d}-{entry['id']}"
        entry["name"] = f"{entry.get('name') or entry['id']} (fine-tune {n})"
        primary = (entry.get("artifacts") or {}).get("primary")
        if isinstance(primary, dict) and isinstance(primary.get("filename"), str):
            stem, dot, ext = primary["filename"].rpartition(".")
            primary["filename"] = f"{stem}-ft{n:06d}.{ext}" if dot else f"{primary['filename']}-ft{n:06d}"
        yield entry


def write_overlay(home: Path, count: int) -> Path:
    folder = home / "config" / "registries"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scale.json"
    # Written entry by entry: this process's memory must stay small, since a child's peak RSS counts the pages
    # it shared with its parent before exec.
    with path.open("w", encoding="utf-8") as out:
        out.write('{"schema_version": "2", "models": [\n')
        for n, entry in enumerate(clone_models(count)):
            out.write((",\n" if n else "") + json.dumps(entry, indent=1))
        out.write("\n]}\n")
    return path


def run_once(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak RSS in MB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.decode(errors='replace')[-800:]}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: KiB


def measure(env: dict, cache: Path, runs: int) -> dict[str, tuple[float, float, float]]:
    cmd = stemsep_cmd() + ["models", "list"]
    first, cached = [], []
    for _ in range(runs):
        shutil.rmtree(cache, ignore_errors=True)
        first.append(run_once(cmd, env))
        cached.append(run_once(cmd, env))
    return {name: (statistics.median(t for t, _c, _m in got), statistics.median(c for _t, c, _m in got),
                   max(m for _t, _c, m in got)) for name, got in (("first", first), ("cached", cached))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, action="append", help="overlay size; repeatable (default 10000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="use this STEMSEP_HOME and keep it (default: a temp dir)")
    args = parser.parse_args()
    sizes = args.models or [TARGET_SIZE]

    home = args.keep or Path(tempfile.mkdtemp(prefix="stemsep-scale-"))
    env = dict(os.environ, STEMSEP_HOME=str(home))
    for name in ("STEMSEP_CACHE_DIR", "STEMSEP_REGISTRY", "STEMSEP_CONFIG_DIR", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    cache = home / "cache"
    subprocess.run(stemsep_cmd() + ["models", "list"], env=env, stdout=subprocess.DEVNULL, check=True)  # .pyc files
    results = [("packaged only", len(json.loads(PACKAGED.read_text(encoding="utf-8"))["models"]),
                PACKAGED.stat().st_size / 2**20,
                measure(env, cache, args.runs))]
    for size in sizes:
        overlay = write_overlay(home, size)
        results.append((f"+ overlay of {size:,}", size, overlay.stat().st_size / 2**20, measure(env, cache, args.runs)))
    (home / "config" / "registries" / "scale.json").unlink(missing_ok=True)

    print(f"median of {args.runs} fresh processes (peak RSS: the largest); CPU cores: {os.cpu_count()}, load "
          f"average {os.getloadavg()[0]:.1f} (on a shared machine, CPU seconds vary less than wall seconds)")
    print(f"{'registry':<24} {'file MB':>8} {'first s':>8} {'(CPU s)':>8} {'first MB':>9} {'cached s':>9} "
          f"{'(CPU s)':>8} {'cached MB':>10}")
    for name, _size, mb, res in results:
        (fw, fc, fm), (cw, cc, cm) = res["first"], res["cached"]
        print(f"{name:<24} {mb:8.1f} {fw:8.2f} {fc:8.2f} {fm:9.0f} {cw:9.3f} {cc:8.3f} {cm:10.0f}")
    ok = True
    for name, size, _mb, res in results[1:]:
        peak = max(res["first"][2], res["cached"][2])
        checks = [("validated + indexed", res["first"][0], TARGET_FIRST_S, "s"),
                  ("listed after that", res["cached"][0], TARGET_CACHED_S, "s"),
                  ("peak memory", peak, TARGET_RSS_MB, "MB")]
        print(f"{name}: " + "; ".join(
            f"{what} {got:.3g} {unit} vs target {target:g} {unit} ({'meets' if got <= target else 'MISSES'})"
            for what, got, target, unit in checks))
        if size == TARGET_SIZE:
            ok = ok and all(got <= target for _w, got, target, _u in checks)
    if args.keep is None:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
