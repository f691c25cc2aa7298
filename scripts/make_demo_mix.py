#!/usr/bin/env python3
"""Synthesise the bundled demo mix: a centre-panned singing voice over panned and centred instruments.

Everything is generated from a fixed seed, so the true stems never need to be committed: this script
recreates them (`--stems-dir`), and `scripts/demo_sdr.py` scores separations against them.

    python scripts/make_demo_mix.py                 # rewrites scripts/demo/demo_mix.flac
    python scripts/make_demo_mix.py --stems-dir D   # also writes D/vocals.wav, D/instrumental.wav

The sources are simple but shaped like the real thing, so a separation has real work to do:
- vocals: additive harmonic voice (1/k source spectrum) through moving vowel formants, vibrato,
  syllable envelopes and a little breath noise; panned dead centre, like a lead vocal;
- bass and kick: centred, as in most mixes (the hard case for centre extraction);
- pad chords panned left, plucked arpeggio panned right, hi-hats right of centre.
Needs numpy and soundfile (the dev venv has both).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SAMPLE_RATE = 44100
SECONDS = 10.0
SEED = 20240611
DEMO_PATH = Path(__file__).resolve().parent / "demo" / "demo_mix.flac"

# Vowel formants (Hz, bandwidth Hz, gain): a, e, i, o, u (textbook averages for a male/female mid voice).
VOWELS = np.array([
    [[800, 80, 1.0], [1150, 90, 0.5], [2900, 120, 0.25]],
    [[400, 60, 1.0], [1600, 80, 0.45], [2700, 120, 0.3]],
    [[350, 50, 1.0], [2000, 100, 0.35], [2800, 120, 0.3]],
    [[450, 70, 1.0], [800, 80, 0.6], [2830, 100, 0.15]],
    [[325, 50, 1.0], [700, 60, 0.3], [2530, 170, 0.1]],
])


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan: -1 hard left, 0 centre, +1 hard right. Returns (frames, 2)."""
    theta = (pan + 1.0) * np.pi / 4.0
    return np.stack([mono * np.cos(theta), mono * np.sin(theta)], axis=1) * np.sqrt(2.0)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _adsr(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n, int(attack * sr)), min(n, int(release * sr))
    if a:
        env[:a] = np.linspace(0.0, 1.0, a)
    if r:
        env[n - r:] *= np.linspace(1.0, 0.0, r)
    return env


def _voice(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    # A two-bar melody, one syllable per note: (start s, length s, midi note, vowel index).
    melody, start = [], 0.4
    notes = [64, 67, 69, 67, 64, 62, 60, 62, 64, 64, 67, 71, 69, 67, 64, 62]
    while start < SECONDS - 0.8:
        for note in notes:
            length = rng.choice([0.28, 0.42, 0.56])
            if start + length > SECONDS - 0.3:
                break
            melody.append((start, length, note, int(rng.integers(0, 5))))
            start += length + 0.06
        start += 0.5  # breath between phrases
    f0 = np.full(n, _midi_hz(60))
    gate = np.zeros(n)
    vowel_of = np.zeros(n, dtype=int)
    for begin, length, note, vowel in melody:
        i0, i1 = int(begin * sr), min(n, int((begin + length) * sr))
        f0[i0:i1] = _midi_hz(note)
        gate[i0:i1] = _adsr(i1 - i0, sr, 0.03, 0.08)
        vowel_of[i0:i1] = vowel
    # Glide between notes (portamento) and vibrato that sets in after each onset.
    glide = int(0.04 * sr)
    f0 = np.convolve(np.pad(f0, (glide, glide), mode="edge"), np.ones(glide) / glide, mode="same")[glide:-glide]
    f0 *= 2.0 ** (0.35 / 12.0 * np.sin(2 * np.pi * 5.5 * t) * np.clip(gate * 1.5, 0, 1))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = np.zeros(n)
    formants = VOWELS[vowel_of]  # (n, 3, 3)
    for k in range(1, 60):
        fk = k * f0
        if np.min(fk) > 9000:
            break
        # Harmonic amplitude: 1/k glottal roll-off times the formant resonances at k*f0.
        amp = np.zeros(n)
        for f in range(3):
            centre, bw, gain = formants[:, f, 0], formants[:, f, 1], formants[:, f, 2]
            amp += gain / (1.0 + ((fk - centre) / bw) ** 2)
        voice += np.where(fk < 9000, amp / k, 0.0) * np.sin(k * phase)
    breath = np.convolve(rng.standard_normal(n), np.array([1, -0.9]), mode="same") * 0.02
    return (voice + breath) * gate


def _pad_chords(n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    chords = [[48, 55, 64], [45, 52, 60], [41, 48, 57], [43, 50, 59]]
    out = np.zeros(n)
    bar = SECONDS / 4
    for i, chord in enumerate(chords):
        i0, i1 = int(i * bar * sr), min(n, int((i + 1) * bar * sr))
        seg = t[i0:i1]
        tone = sum(np.sum([np.sin(2 * np.pi * _midi_hz(m) * k * seg) / k ** 1.5 for k in range(1, 8)], axis=0)
                   for m in chord)
        out[i0:i1] = tone * _adsr(i1 - i0, sr, 0.3, 0.3)
    return out


def _arpeggio(n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    notes = [72, 76, 79, 84, 79, 76]
    step = 0.125
    for i in range(int(SECONDS / step)):
        i0 = int(i * step * sr)
        length = min(n - i0, int(0.4 * sr))
        if length <= 0:
            break
        seg = np.arange(length) / sr
        f = _midi_hz(notes[i % len(notes)])
        tone = sum(np.sin(2 * np.pi * f * k * seg) * np.exp(-seg * (6 + 3 * k)) / k for k in range(1, 6))
        out[i0:i0 + length] += tone
    return out


def _bass_and_kick(n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    roots = [36, 33, 29, 31]
    bar = SECONDS / 4
    for i in range(int(SECONDS / 0.5)):
        i0 = int(i * 0.5 * sr)
        length = min(n - i0, int(0.45 * sr))
        seg = np.arange(length) / sr
        f = _midi_hz(roots[int(i * 0.5 // bar) % 4])
        bass = (np.sin(2 * np.pi * f * seg) + 0.3 * np.sin(4 * np.pi * f * seg)) * np.exp(-seg * 2.5)
        kick = np.sin(2 * np.pi * (50 * seg + 60 * (1 - np.exp(-seg * 30)) / 30)) * np.exp(-seg * 12)
        out[i0:i0 + length] += 0.8 * bass + (kick if i % 2 == 0 else 0.0)
    return out


def _hats(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    for i in range(int(SECONDS / 0.25)):
        i0 = int(i * 0.25 * sr)
        length = min(n - i0, int(0.06 * sr))
        noise = np.diff(rng.standard_normal(length + 1))  # crude high-pass
        out[i0:i0 + length] += noise * np.exp(-np.arange(length) / sr * 60)
    return out


def make_demo(seed: int = SEED) -> dict[str, np.ndarray | int]:
    """The demo's sources: `mix`, `vocals`, `instrumental` as float64 (frames, 2), and `sample_rate`.

    Scaled together so the mix peaks at -1 dBFS; mix == vocals + instrumental exactly (before the
    16-bit quantisation of the bundled file).
    """
    rng = np.random.default_rng(seed)
    sr, n = SAMPLE_RATE, int(SECONDS * SAMPLE_RATE)
    vocals = _pan(_voice(rng, n, sr), 0.0) * 0.30
    instrumental = (_pan(_pad_chords(n, sr), -0.7) * 0.05
                    + _pan(_arpeggio(n, sr), 0.6) * 0.10
                    + _pan(_bass_and_kick(n, sr), 0.0) * 0.22
                    + _pan(_hats(rng, n, sr), 0.45) * 0.05)
    mix = vocals + instrumental
    scale = 10 ** (-1 / 20) / np.max(np.abs(mix))
    return {"mix": mix * scale, "vocals": vocals * scale, "instrumental": instrumental * scale, "sample_rate": sr}


def main() -> None:
    import soundfile as sf

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEMO_PATH, help="where to write the mix (FLAC, 16-bit)")
    parser.add_argument("--stems-dir", type=Path, help="also write the true stems here as float WAV")
    args = parser.parse_args()
    demo = make_demo()
    sr = int(demo["sample_rate"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    sf.write(tmp, demo["mix"], sr, format="FLAC", subtype="PCM_16")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {SECONDS:g} s, {sr} Hz, stereo)")
    if args.stems_dir:
        args.stems_dir.mkdir(parents=True, exist_ok=True)
        for name in ("vocals", "instrumental"):
            path = args.stems_dir / f"{name}.wav"
            sf.write(path, demo[name], sr, subtype="FLOAT")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
