#!/usr/bin/env python3
"""`stemsep serve` against fresh `stemsep separate` processes (issue 19's targets), with the default DSP model:

- first progress: a job submitted over HTTP to a warm server until its first `progress` event on the SSE
  stream, against a fresh `stemsep separate --json` process until its first `progress` line (target: the
  server >= 3x faster), medians of --runs;
- 100 queued short jobs on one model: how many workers the server started for them (target: one model
  load) and the host's overhead per job: wall time of the whole queue (first submit to last `completed`)
  minus the worker's own seconds per job (its `result` events), divided by the jobs (target <= 20 ms);
- SSE fan-out: 20 clients follow one job's event stream at once; each must see every event, in order;
  the time from the job's end to the last client's last event.

Runs a real server (`python -m envmgr.cli.main serve --port 0`) in a throwaway home that shares the
configured env store and caches (the default model's env is built on first use).

    python scripts/bench/serve_bench.py [--runs 5] [--jobs 100] [--clients 20] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo" / "demo_mix.flac"
STEMSEP = [sys.executable, "-m", "envmgr.cli.main"]


def _home_env(home: Path) -> dict[str, str]:
    from envmgr.config import load_config

    shared = load_config()
    return {**os.environ, "STEMSEP_HOME": str(home), "STEMSEP_ENV_STORE": str(shared.env_store),
            "STEMSEP_CACHE_DIR": str(shared.cache_dir), "STEMSEP_UV_CACHE_DIR": str(shared.uv_cache_dir)}


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*STEMSEP, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True,
                                     stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        url = token = None
        for line in self.proc.stdout:
            if m := re.search(r"listening on (\S+)", line):
                url = m.group(1)
            elif m := re.match(r"token: (\S+)", line):
                token = m.group(1)
                break
        assert url and token, "the server did not start"
        self.url, self.headers = url, {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=120)

    def submit(self, path: Path) -> str:
        return str(self.http.post("/v1/jobs", json={"inputs": [str(path)]}).json()["id"])

    def events(self, job_id: str, client: httpx.Client | None = None) -> list[dict[str, Any]]:
        out = []
        with (client or self.http).stream("GET", f"/v1/jobs/{job_id}/events", headers=self.headers) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    out.append(json.loads(line[6:]))
        return out

    def first_progress(self, path: Path) -> float:
        t0 = time.perf_counter()
        job_id = self.submit(path)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            for line in response.iter_lines():
                if line == "event: progress":
                    elapsed = time.perf_counter() - t0
                    break
        self.wait(job_id)
        return elapsed

    def wait(self, job_id: str) -> dict[str, Any]:
        while (job := self.http.get(f"/v1/jobs/{job_id}").json())["state"] not in ("completed", "failed", "cancelled"):
            time.sleep(0.02)
        return dict(job)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def _cli_first_progress(env: dict[str, str], out: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([*STEMSEP, "separate", "--json", "-o", str(out), str(DEMO)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    elapsed = float("nan")
    for line in proc.stdout:
        if json.loads(line).get("type") == "progress" and elapsed != elapsed:
            elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each queued job's input")
    args = parser.parse_args()
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        home = Path(tmp)
        env = _home_env(home)
        short = home / "short.flac"
        audio, rate = sf.read(str(DEMO), frames=int(args.seconds * 44100), dtype="float32")
        sf.write(str(short), audio, rate)

        _cli_first_progress(env, home / "cli-warmup")  # builds the env if needed; a first prewarm record
        cli = statistics.median(_cli_first_progress(env, home / f"cli-{i}") for i in range(args.runs))
        server = _Server(env)
        try:
            server.first_progress(DEMO)  # the server's worker starts on its first job: warm it
            warm = statistics.median(server.first_progress(DEMO) for _ in range(args.runs))
            print(f"first progress: separate process {cli * 1000:.0f} ms, warm server {warm * 1000:.0f} ms "
                  f"-> {cli / warm:.1f}x (target >= 3x)")

            t0 = time.perf_counter()
            ids = [server.submit(short) for _ in range(args.jobs)]
            server.events(ids[-1])  # one slot, FIFO: the stream of the last job ends when the queue is done
            wall = time.perf_counter() - t0
            jobs = [server.wait(i) for i in ids]
            worker_s = sum(e.get("seconds", 0.0) for i in ids for e in server.events(i) if e["type"] == "result")
            loads = sum(1 for i in ids for e in server.events(i) if e["type"] == "worker" and not e.get("warm"))
            ok = sum(j["state"] == "completed" for j in jobs)
            print(f"{args.jobs} queued {args.seconds:g}-s jobs: {ok} completed, workers started {loads} "
                  f"(target 1 load; 0 = the one already warm), wall {wall:.2f} s, worker {worker_s:.2f} s, "
                  f"host overhead {(wall - worker_s) / args.jobs * 1000:.1f} ms/job (target <= 20 ms)")

            job_id = server.submit(DEMO)
            results: list[list[dict[str, Any]]] = [[] for _ in range(args.clients)]
            ended: list[float] = [0.0] * args.clients

            def follow(k: int) -> None:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    results[k] = server.events(job_id, client)
                ended[k] = time.perf_counter()
            threads = [threading.Thread(target=follow, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done_at = server.wait(job_id)["finished"]
            reference = [e["seq"] for e in server.events(job_id)]
            same = sum([e["seq"] for e in r] == reference for r in results)
            lag = max(ended) - (time.perf_counter() - (time.time() - done_at))
            print(f"SSE fan-out: {same}/{args.clients} clients saw all {len(reference)} events in order; "
                  f"last client done {lag * 1000:.0f} ms after the job ended")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
