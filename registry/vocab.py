"""Closed vocabularies of the registry: the words every other module may rely on."""

from __future__ import annotations

from typing import Literal

# Canonical runtime ids (seed §3.1). Routing only ever picks one of these.
RuntimeId = Literal["audio-separator", "stemsep-legacy", "msst"]
RUNTIME_IDS: tuple[RuntimeId, ...] = ("audio-separator", "stemsep-legacy", "msst")

# The Python distribution each runtime pins (None: our own in-repo code, nothing to pin).
RUNTIME_LIBRARIES: dict[str, str | None] = {"audio-separator": "audio-separator", "msst": "msst",
                                             "stemsep-legacy": None}

# What a model can be used for (seed §3.6), extended with the guide's post-processing roles.
Role = Literal[
    "separation",
    "karaoke",
    "dereverb",
    "denoise",
    "decrowd",
    "debleed",
    "restoration",
    "enhancement",
    "phase_fix_reference",
]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

# What a value of `overlap` means (docs/DESIGN.md §4). Every recommended overlap declares one of these.
#   divisor: integer N >= 1, hop = chunk_size // N
#            (msst `inference.num_overlap`; audio-separator MDX23C always, Roformer since 0.47.0)
#   ratio:   0 <= r < 1, hop = int((1 - r) * chunk_size)   (MDX-Net ONNX, Demucs in audio-separator)
#   seconds: the hop itself in seconds, hop = min(int(s * sample_rate), chunk_size)
#            (audio-separator Roformer before 0.47.0: `desired_step = int(overlap * sample_rate)`;
#            the guide's "max overlap = (dim_t - 1) / 100" is that chunk length in seconds, L4004-4018)
#   none:    the architecture has no overlap parameter (VR, DSP)
OverlapMeaning = Literal["divisor", "ratio", "seconds", "none"]
OVERLAP_MEANINGS: tuple[str, ...] = OverlapMeaning.__args__  # type: ignore[attr-defined]

# Words the legacy StemSep registry used for overlap meanings. Accepted only in compatibility mode;
# they do not say which meaning applies, so they are never used for translation.
LEGACY_OVERLAP_MEANINGS: tuple[str, ...] = (
    "auto",
    "divisor_or_seconds",
    "ratio_0_to_1",
    "chunk_overlap_divisor",
)

# Unit of `recommended_settings.segment_size` (null reads as samples, what the legacy data holds:
# 352800 = 8 s at 44.1 kHz).
#   samples: chunk length in samples (msst `audio.chunk_size` / `inference.chunk_size`)
#   frames:  STFT frames, UVR's "segment size" / `dim_t`; chunk = hop_length * (frames - 1)
#   seconds: segment length in seconds (Demucs `segment`)
SegmentUnit = Literal["samples", "frames", "seconds"]
SEGMENT_UNITS: tuple[str, ...] = SegmentUnit.__args__  # type: ignore[attr-defined]

# `yaml` is the seed proposal's word for a config file (seed §3.7); it loads, strict mode asks for `config`.
ArtifactKind = Literal["checkpoint", "config", "code", "onnx", "other", "yaml"]

# How strictly a registry file is read: `strict` for our curated file, `compat` for legacy/user files
# (strict-only findings become warnings, legacy overlap words are accepted).
Mode = Literal["strict", "compat"]
MODES: tuple[str, ...] = ("strict", "compat")

# Where a recorded fact came from (`evidence[].kind`).
EvidenceKind = Literal["guide", "config", "homepage", "library", "measured", "legacy"]

# Architecture names the registry uses, and the family whose settings semantics apply (docs/DESIGN.md §4).
# An exact lookup of the declared `architecture` field: never a substring test on ids or names.
ARCHITECTURE_FAMILIES: dict[str, str] = {
    "BS-Roformer": "roformer",
    "Mel-Roformer": "roformer",
    "MDX23C": "mdx23c",
    "MDX-Net": "mdx_net",
    "Demucs": "demucs",
    "VR": "vr",
    "SCNet": "scnet",
    "BandIt": "bandit",
    "Apollo": "apollo",
    "DSP": "dsp",
    "Other": "other",
}
ArchFamily = Literal["roformer", "mdx23c", "mdx_net", "demucs", "vr", "scnet", "bandit", "apollo", "dsp", "other"]

# Where a resolved setting came from (preflight's `resolved.settings`).
Provenance = Literal["registry", "user", "runtime_default"]

# Highest frequency a Phase Fix bound may name: Nyquist of 48 kHz audio, the highest rate these models meet.
PHASE_FIX_MAX_HZ = 24000
