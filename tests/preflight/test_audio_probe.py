"""envmgr.preflight.audio_probe (libsndfile through ctypes, no numpy) says exactly what soundfile says about real
files of many formats, subtypes, rates and channel counts, and refuses what soundfile cannot read; the
host's input probe (preflight) never imports numpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from envmgr.preflight import audio_probe

CASES = [  # (format, subtype, sample rate, channels, seconds)
    ("WAV", "PCM_16", 44100, 2, 0.5), ("WAV", "PCM_24", 48000, 1, 0.3), ("WAV", "PCM_32", 22050, 2, 0.2),
    ("WAV", "FLOAT", 44100, 2, 0.5), ("WAV", "DOUBLE", 96000, 6, 0.1), ("WAV", "PCM_U8", 8000, 1, 0.4),
    ("WAV", "ULAW", 8000, 1, 0.2), ("WAV", "IMA_ADPCM", 22050, 2, 0.3), ("FLAC", "PCM_16", 44100, 2, 1.0),
    ("FLAC", "PCM_24", 192000, 2, 0.1), ("FLAC", "PCM_S8", 16000, 1, 0.2), ("OGG", "VORBIS", 44100, 2, 0.5),
    ("OGG", "OPUS", 48000, 2, 0.5), ("MP3", "MPEG_LAYER_III", 44100, 2, 0.5), ("AIFF", "PCM_16", 44100, 2, 0.2),
    ("AIFF", "FLOAT", 48000, 1, 0.2), ("CAF", "ALAC_16", 44100, 2, 0.2), ("W64", "PCM_24", 44100, 2, 0.1),
    ("RF64", "FLOAT", 44100, 2, 0.1), ("WAVEX", "PCM_16", 44100, 4, 0.1), ("AU", "ALAW", 8000, 1, 0.2),
]


def write(path: Path, fmt: str, subtype: str, rate: int, channels: int, seconds: float) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    audio = 0.4 * np.sin(2 * np.pi * 440 * t[:, None] * np.arange(1, channels + 1))
    sf.write(str(path), audio, rate, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize("fmt, subtype, rate, channels, seconds", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_same_facts_as_soundfile(tmp_path: Path, fmt: str, subtype: str, rate: int, channels: int,
                                 seconds: float) -> None:
    path = write(tmp_path / f"x.{fmt.lower()}", fmt, subtype, rate, channels, seconds)
    theirs = sf.info(str(path))
    ours = audio_probe.read_info(path, 4096)
    assert (ours.format, ours.subtype, ours.sample_rate, ours.channels, ours.frames) == (
        theirs.format, theirs.subtype, theirs.samplerate, theirs.channels, theirs.frames)
    assert ours.frames > 0


def test_unicode_and_spaces_in_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "ümlaut dir ♫"
    folder.mkdir()
    path = write(folder / "my song (live).flac", "FLAC", "PCM_16", 44100, 2, 0.2)
    assert audio_probe.read_info(path, 4096).frames == sf.info(str(path)).frames


@pytest.mark.parametrize("make", ["garbage", "truncated_flac", "header_only_mp3"])
def test_what_soundfile_cannot_decode_is_refused(tmp_path: Path, make: str) -> None:
    path = tmp_path / "bad"
    if make == "garbage":
        path = path.with_suffix(".wav")
        path.write_bytes(b"these are not samples\n" * 100)
    elif make == "truncated_flac":
        good = write(tmp_path / "good.flac", "FLAC", "PCM_16", 44100, 2, 1.0)
        path = path.with_suffix(".flac")
        path.write_bytes(good.read_bytes()[:600])  # the header and a fragment of the first frame
    else:
        path = path.with_suffix(".mp3")
        path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10)
    with pytest.raises(audio_probe.Undecodable) as ours:
        audio_probe.read_info(path, 4096)
    assert str(path) in str(ours.value)
    with pytest.raises(Exception):
        with sf.SoundFile(str(path)) as fh:
            fh.read(4096, dtype="float32")
            if fh.frames == 0:
                raise ValueError("no frames")  # what preflight calls empty


def test_the_host_input_probe_never_imports_numpy(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[2] / "scripts" / "demo" / "demo_mix.flac"
    code = ("import sys; from pathlib import Path; from envmgr.preflight.run import probe_audio; "
            f"f = probe_audio(Path({str(demo)!r})); assert f.format == 'FLAC' and f.frames > 0, f; "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_a_loadable_libsndfile_preflight_reads_inputs_through_soundfile(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from envmgr.preflight.run import probe_audio

    def missing() -> None:
        raise audio_probe.LibraryMissing("no libsndfile here")

    monkeypatch.setattr(audio_probe, "_library", missing)  # as on a machine where ctypes cannot load it
    good = write(tmp_path / "good.flac", "FLAC", "PCM_24", 48000, 2, 0.2)
    facts = probe_audio(good)
    assert (facts.format, facts.subtype, facts.sample_rate, facts.channels, facts.frames, facts.decode_error) == (
        "FLAC", "PCM_24", 48000, 2, 9600, None)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio\n" * 100)
    assert probe_audio(bad).decode_error
