#!/usr/bin/env python3
"""Peak RSS of a real worker against the input's length, per runtime: does memory grow with the track?

    python scripts/bench/memory_bench.py [--minutes 1,10,60] [--whole-file-minutes 1,3,10]
        [--runtimes default,stemsep-legacy,audio-separator,msst]

Each (runtime, length) runs in a fresh worker (`python -m runtimes.worker`, in the env `stemsep separate`
builds) one `separate` job as the host sends it: float WAV in (the demo mix tiled), both stems out as
float WAVs; the peak is the worker's VmHWM read once the job is done.
- `default`: the default model, builtin-center-split (the DSP, stemsep-legacy without torch);
- `stemsep-legacy`: our BS-Roformer with the tiny test config (tests/runtimes/conftest.py: dim 32, depth 2,
  4 s chunks, overlap 2) and random weights;
- `audio-separator`, `msst`: the same tiny checkpoint. Both libraries load the whole file and hold every
  stem whole, so they run the shorter `--whole-file-minutes` lengths (60 minutes would need several GiB).
Prints the peak per length, the ratio longest / 1 minute (target for the streaming runtimes: <= 1.2x)
and the growth per minute of stereo 44.1 kHz input (least squares over the lengths): the figures
`envmgr/envs/runtime_defs.py` (MEMORY) and docs/runtimes.md quote.

Needs the machine config of the test suite (STEMSEP_*) to build envs; torch runs single-threaded unless
OMP_NUM_THREADS says otherwise. A 60-minute float WAV is 1.2 GiB on disk, its stems as much again each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

RATE = 44100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,10,60", help="lengths for the streaming runtimes")
    parser.add_argument("--whole-file-minutes", default="1,3,10", help="lengths for audio-separator and msst")
    parser.add_argument("--runtimes", default="default,stemsep-legacy,audio-separator,msst")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from envmgr.config import load_config
    from envmgr.worker.code_copy import ensure_worker_code
    from tests.runtimes.conftest import make_checkpoint, model_entry, runtime_env, tiny_config, write_yaml

    code = ensure_worker_code(load_config().cache_dir)
    wanted = args.runtimes.split(",")
    streaming = [float(m) for m in args.minutes.split(",")]
    whole = [float(m) for m in args.whole_file_minutes.split(",")]
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        work = Path(tmp)
        config = write_yaml(work / "tiny.yaml", tiny_config())
        ckpt = None
        rows: dict[str, dict[float, float]] = {}
        for name in wanted:
            if name == "default":
                env, runtime, model, arts, settings = _default_model()
            else:
                runtime = name
                env = runtime_env(runtime)
                if ckpt is None:  # msst's own class writes the checkpoint every runtime loads
                    ckpt = make_checkpoint(runtime_env("msst").python, config, work / "tiny.ckpt")
                model = model_entry("bench-tiny-bs", [runtime])
                model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                                      "config": {"kind": "config", "filename": config.name}}
                arts = {ckpt.name: ckpt, config.name: config}
                settings = {"audio-separator": {"mdxc_params": {"overlap": 2}}}.get(runtime, {"inference": {"num_overlap": 2}})
            rows[name] = {}
            for minutes in (whole if name in ("audio-separator", "msst") else streaming):
                wav = _input(work / f"{minutes:g}m.wav", minutes)
                rows[name][minutes] = _peak(env, runtime, code, model, arts, settings, wav, work / "out")
                wav.unlink()
                print(f"  {name}: {minutes:g} min -> {rows[name][minutes]:.0f} MiB", flush=True)
    _report(rows)
    return 0


def _default_model() -> tuple[Any, str, dict[str, Any], dict[str, Path], dict[str, Any]]:
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.model import ModelEntry
    from tests.worker.conftest import DSP_MODEL

    manager = EnvManager()
    env = manager.ensure(request_for_model(ModelEntry.model_validate(DSP_MODEL), "stemsep-legacy", manager.config))
    return env, "stemsep-legacy", DSP_MODEL, {}, {}


def _input(path: Path, minutes: float) -> Path:
    """The demo mix tiled to `minutes`, written block by block (the bench's own memory is not measured)."""
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(REPO / "scripts" / "demo" / "demo_mix.flac", dtype="float32", always_2d=True)
    frames = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="FLOAT") as out:
        for start in range(0, frames, len(audio)):
            out.write(audio[:min(len(audio), frames - start)])
    return path


def _peak(env: Any, runtime: str, code: Any, model: dict[str, Any], arts: dict[str, Path], settings: dict[str, Any],
          wav: Path, out: Path) -> float:
    """Peak RSS (MiB) of a fresh worker after one job on `wav`."""
    from envmgr.worker.client import Timeouts, WorkerClient
    from tests.runtimes.conftest import job

    client = WorkerClient(env.python, runtime, code, env_id=env.id, timeouts=Timeouts(silence=900.0))
    client.start()
    try:
        client.run(job(model, arts, wav, out, settings))
        status = Path(f"/proc/{client.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    finally:
        client.close()
        for path in out.glob("*.wav"):
            path.unlink()


def _report(rows: dict[str, dict[float, float]]) -> None:
    print("peak RSS of a fresh worker, one job, stereo 44.1 kHz float WAV "
          f"(one minute of it as float32: {60 * RATE * 2 * 4 / 2**20:.1f} MiB); OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for name, peaks in rows.items():
        lengths = sorted(peaks)
        cells = "  ".join(f"{m:g} min {peaks[m]:6.0f} MiB" for m in lengths)
        n = len(lengths)
        mean_x, mean_y = sum(lengths) / n, sum(peaks.values()) / n
        slope = (sum((m - mean_x) * (peaks[m] - mean_y) for m in lengths)
                 / (sum((m - mean_x) ** 2 for m in lengths) or 1.0))
        base = mean_y - slope * mean_x
        ratio = peaks[lengths[-1]] / peaks[lengths[0]]
        print(f"  {name:16} {cells}   {lengths[-1]:g}/{lengths[0]:g} min {ratio:.2f}x   "
              f"growth {slope:6.1f} MiB/min (base {base:.0f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
