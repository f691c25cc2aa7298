"""What an input file is (format, sample rate, channels, frames) and whether its codec decodes: libsndfile
called through ctypes, so the host never imports numpy.

`soundfile` answers the same questions with the same library, but imports numpy first, start-up time every
`stemsep separate` and `stemsep preflight` would pay (scripts/bench/README.md). The library is the one
soundfile itself loads: the copy its wheel bundles (`_soundfile_data`), else the system's libsndfile.
Where neither loads, `read_info` says so (LibraryMissing) and the caller uses soundfile instead.
The format codes and names are libsndfile's public API (sndfile.h), named as soundfile names them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

_SFM_READ = 0x10
_MAJOR_MASK, _SUB_MASK = 0x0FFF0000, 0x0000FFFF
_MAJOR = {0x010000: "WAV", 0x020000: "AIFF", 0x030000: "AU", 0x040000: "RAW", 0x050000: "PAF", 0x060000: "SVX",
          0x070000: "NIST", 0x080000: "VOC", 0x0A0000: "IRCAM", 0x0B0000: "W64", 0x0C0000: "MAT4",
          0x0D0000: "MAT5", 0x0E0000: "PVF", 0x0F0000: "XI", 0x100000: "HTK", 0x110000: "SDS", 0x120000: "AVR",
          0x130000: "WAVEX", 0x160000: "SD2", 0x170000: "FLAC", 0x180000: "CAF", 0x190000: "WVE", 0x200000: "OGG",
          0x210000: "MPC2K", 0x220000: "RF64", 0x230000: "MP3"}
_SUBTYPE = {0x0001: "PCM_S8", 0x0002: "PCM_16", 0x0003: "PCM_24", 0x0004: "PCM_32", 0x0005: "PCM_U8",
            0x0006: "FLOAT", 0x0007: "DOUBLE", 0x0010: "ULAW", 0x0011: "ALAW", 0x0012: "IMA_ADPCM",
            0x0013: "MS_ADPCM", 0x0020: "GSM610", 0x0021: "VOX_ADPCM", 0x0022: "NMS_ADPCM_16",
            0x0023: "NMS_ADPCM_24", 0x0024: "NMS_ADPCM_32", 0x0030: "G721_32", 0x0031: "G723_24",
            0x0032: "G723_40", 0x0040: "DWVW_12", 0x0041: "DWVW_16", 0x0042: "DWVW_24", 0x0043: "DWVW_N",
            0x0050: "DPCM_8", 0x0051: "DPCM_16", 0x0060: "VORBIS", 0x0064: "OPUS", 0x0070: "ALAC_16",
            0x0071: "ALAC_20", 0x0072: "ALAC_24", 0x0073: "ALAC_32", 0x0080: "MPEG_LAYER_I",
            0x0081: "MPEG_LAYER_II", 0x0082: "MPEG_LAYER_III"}


class _SfInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int), ("channels", ctypes.c_int),
                ("format", ctypes.c_int), ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


@dataclass(frozen=True)
class AudioInfo:
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int


class LibraryMissing(RuntimeError):
    """No libsndfile could be loaded (neither soundfile's bundled copy nor a system one)."""


class Undecodable(RuntimeError):
    """libsndfile cannot open or decode the file; the message is libsndfile's."""


def read_info(path: str | os.PathLike[str], decode_frames: int) -> AudioInfo:
    """Open `path`, read its header, and decode its first `decode_frames` frames to prove the codec works."""
    lib = _library()
    info = _SfInfo()
    handle = lib.sf_open(os.fsencode(path), _SFM_READ, ctypes.byref(info))
    if not handle:
        raise Undecodable(f"Error opening {str(path)!r}: {_text(lib.sf_strerror(None))}")
    try:
        n = min(info.frames, decode_frames)
        if n > 0:
            buffer = (ctypes.c_float * (n * info.channels))()
            lib.sf_readf_float(handle, buffer, n)
            if lib.sf_error(handle):
                raise Undecodable(f"Error decoding {str(path)!r}: {_text(lib.sf_strerror(handle))}")
    finally:
        lib.sf_close(handle)
    major, sub = info.format & _MAJOR_MASK, info.format & _SUB_MASK
    return AudioInfo(format=_MAJOR.get(major, f"0x{major:06x}"), subtype=_SUBTYPE.get(sub, f"0x{sub:04x}"),
                     sample_rate=info.samplerate, channels=info.channels, frames=info.frames)


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else "unknown error"


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    for candidate in _candidates():
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.sf_open.restype, lib.sf_open.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        lib.sf_strerror.restype, lib.sf_strerror.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        lib.sf_error.restype, lib.sf_error.argtypes = ctypes.c_int, [ctypes.c_void_p]
        lib.sf_readf_float.restype = ctypes.c_int64
        lib.sf_readf_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        lib.sf_close.restype, lib.sf_close.argtypes = ctypes.c_int, [ctypes.c_void_p]
        return lib
    raise LibraryMissing("no libsndfile found (neither soundfile's bundled copy nor a system library)")


def _candidates() -> Iterator[str]:
    """soundfile's bundled library first (found without importing soundfile), then the system's (looked
    up only if needed: find_library runs ldconfig)."""
    spec = importlib.util.find_spec("_soundfile_data")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(str(p) for p in Path(folder).glob("libsndfile*") if p.is_file())
    import ctypes.util

    system = ctypes.util.find_library("sndfile")
    if system:
        yield system
