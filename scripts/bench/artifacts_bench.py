#!/usr/bin/env python3
"""What the model store's safety costs: downloads, imports and status, side by side with their floors.

Measured in one run on one file (default 512 MiB, random bytes, in a temp dir):
- download: `ArtifactStore.ensure` (Range-ready partial file, sha256 while streaming, fsync, rename,
  manifest) vs its floor, a bare httpx stream to a file with sha256 (what any verified download
  must do), and for scale the same without hashing and `curl -o`; all from one local HTTP server
  running in its own process. Wall time and this process's CPU time per GiB.
- import: `import_file` by hardlink and by copy (both verify the pinned sha256) vs hashing the file
  with hashlib (the floor of any verified import), and `cp` + `sha256sum` for scale.
- status: with the manifest (no hashing) vs `--verify` (hashes again).

    python scripts/bench/artifacts_bench.py [--mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from envmgr.artifacts import ArtifactStore  # noqa: E402
from registry.model import ModelEntry  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process incl. its threads)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _median(fn, runs: int) -> tuple[float, float]:
    results = [_timed(fn) for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    gib = args.mib / 1024

    with tempfile.TemporaryDirectory(prefix="artifacts-bench-") as tmp:
        tmp = Path(tmp)
        src_dir = tmp / "served"
        src_dir.mkdir()
        src = src_dir / "model.ckpt"
        h = hashlib.sha256()
        with open(src, "wb") as f:
            for _ in range(args.mib):
                block = os.urandom(1 << 20)
                h.update(block)
                f.write(block)
        sha = h.hexdigest()
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                   "--directory", str(src_dir)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/model.ckpt"
            for _ in range(100):
                try:
                    httpx.head(url, trust_env=False)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            entry = ModelEntry.model_validate({"id": "bench", "artifacts": {"primary": {
                "kind": "checkpoint", "filename": "model.ckpt", "url": url, "sha256": sha,
                "size_bytes": args.mib << 20}}})
            out = tmp / "out.bin"

            def ours() -> None:
                root = tmp / "store"
                shutil.rmtree(root, ignore_errors=True)
                with ArtifactStore(root) as store:
                    store.ensure(entry)

            def curl() -> None:
                subprocess.run(["curl", "-s", "--noproxy", "*", "-o", str(out), url], check=True)

            def bare_httpx(hashing: bool):
                def run() -> None:
                    digest = hashlib.sha256()
                    with httpx.Client(trust_env=False) as c, c.stream("GET", url) as r, open(out, "wb") as f:
                        for chunk in r.iter_bytes():
                            f.write(chunk)
                            if hashing:
                                digest.update(chunk)
                return run

            rows = [("download: ours (sha256, fsync, manifest)", *_median(ours, args.runs)),
                    ("floor: bare httpx to file + sha256", *_median(bare_httpx(True), args.runs)),
                    ("scale: bare httpx to file, no hash", *_median(bare_httpx(False), args.runs))]
            if shutil.which("curl"):
                rows.append(("scale: curl -o, no hash", *_median(curl, args.runs)))
            base = rows[1][1]
            print(f"{args.mib} MiB over 127.0.0.1 from `python -m http.server` (median of {args.runs}); "
                  f"CPU = this process only")
            for name, wall, cpu in rows:
                print(f"  {name:44s} {wall:6.2f} s  {gib / wall:5.2f} GiB/s  x{wall / base:4.2f} vs floor"
                      f"  CPU {cpu / gib:5.2f} s/GiB")

            store_root = tmp / "store"
            e = entry

            def imp(copy: bool):
                def run() -> None:
                    shutil.rmtree(tmp / "istore", ignore_errors=True)
                    with ArtifactStore(tmp / "istore") as s:
                        s.import_file(e, e.artifacts.primary, src, copy=copy)
                return run

            def hash_only() -> None:
                with open(src, "rb") as f:
                    hashlib.file_digest(f, "sha256") if hasattr(hashlib, "file_digest") else \
                        hashlib.sha256(f.read())

            def cp_sha() -> None:
                shutil.copyfile(src, out)
                subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)

            rows = [("import: hardlink + verify", _median(imp(False), args.runs)[0]),
                    ("import: copy + verify", _median(imp(True), args.runs)[0]),
                    ("floor: hashlib sha256 of the file", _median(hash_only, args.runs)[0])]
            if shutil.which("sha256sum"):
                rows.append(("scale: cp + sha256sum", _median(cp_sha, args.runs)[0]))
            floor = rows[2][1]
            print("import (pinned sha256 verified)")
            for name, wall in rows:
                print(f"  {name:44s} {wall:6.2f} s  x{wall / floor:4.2f} vs floor")

            with ArtifactStore(store_root) as s:
                warm = _median(lambda: s.status(e), args.runs)[0]
                verify = _median(lambda: s.status(e, verify=True), args.runs)[0]
            print("status")
            print(f"  {'status (manifest vouches)':44s} {warm * 1000:8.2f} ms")
            print(f"  {'status --verify (hashes again)':44s} {verify * 1000:8.2f} ms  x{verify / warm:,.0f}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
