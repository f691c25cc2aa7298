"""Command line of our Roformer, for tests, benchmarks and debugging (the worker uses the Python API).

    python -m runtimes.legacy.roformer separate --config C.yaml --checkpoint M.ckpt --input mix.wav|mix.npy
        --out-dir DIR [--model-type bs_roformer|mel_band_roformer] [--chunk-size N] [--num-overlap N]
        [--batch-size N] [--device cpu|cuda|mps|auto] [--threads N] [--allow-unsafe-pickle] [--stream]

Writes DIR/<stem>.npy ((frames, channels) float32; `.wav` float with --stream, which reads and writes
the audio files block by block) and DIR/result.json {stems, seconds, device, warnings, peak_rss_mib}.
A failure prints one JSON object {code, message, hint} on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from runtimes.legacy.roformer.errors import RoformerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtimes.legacy.roformer")
    sub = parser.add_subparsers(dest="command", required=True)
    sep = sub.add_parser("separate", help="separate one input")
    sep.add_argument("--config", required=True)
    sep.add_argument("--checkpoint", required=True)
    sep.add_argument("--input", required=True, help=".npy (frames, channels) float32 or an audio file")
    sep.add_argument("--out-dir", required=True)
    sep.add_argument("--model-type")
    sep.add_argument("--chunk-size", type=int)
    sep.add_argument("--num-overlap", type=int)
    sep.add_argument("--batch-size", type=int)
    sep.add_argument("--device", default="cpu")
    sep.add_argument("--threads", type=int, help="torch intra-op threads")
    sep.add_argument("--allow-unsafe-pickle", action="store_true",
                     help="the registry marks the checkpoint unsafe_pickle and the user consents")
    sep.add_argument("--stream", action="store_true", help="audio file to float WAVs, block by block")
    args = parser.parse_args(argv)
    try:
        result = _separate(args)
    except RoformerError as exc:
        print(json.dumps({"code": exc.code, "message": exc.message, "hint": exc.hint}), file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _separate(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from runtimes.legacy.roformer.separator import RoformerSeparator

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"chunk_size": args.chunk_size, "num_overlap": args.num_overlap, "batch_size": args.batch_size}
    started = time.perf_counter()
    sep = RoformerSeparator.load(args.config, args.checkpoint, model_type=args.model_type, overrides=overrides,
                                 device=args.device, allow_unsafe=args.allow_unsafe_pickle,
                                 warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    loaded = time.perf_counter()
    if args.stream:
        sep.separate_file(args.input, {stem: out_dir / f"{stem}.wav" for stem in sep.stems})
    else:
        if args.input.endswith(".npy"):
            mix, rate = np.load(args.input), None
        else:
            import soundfile as sf

            mix, rate = sf.read(args.input, dtype="float32", always_2d=True)
        stems = sep.separate(mix, rate)
        for name, audio in stems.items():
            tmp = out_dir / f".{name}.npy.partial"
            with open(tmp, "wb") as fh:
                np.save(fh, audio)
            os.replace(tmp, out_dir / f"{name}.npy")
    done = time.perf_counter()
    result = {"stems": list(sep.stems), "load_seconds": loaded - started, "seconds": done - loaded,
              "device": str(sep.device), "threads": torch.get_num_threads(), "warnings": sep.warnings,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (out_dir / "result.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(main())
