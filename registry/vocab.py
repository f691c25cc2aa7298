"""Closed vocabularies of the registry: the words every other module may rely on."""

from __future__ import annotations

from typing import Literal

# Canonical runtime ids (seed §3.1). Routing only ever picks one of these.
RuntimeId = Literal["audio-separator", "stemsep-legacy", "msst"]
RUNTIME_IDS: tuple[str, ...] = ("audio-separator", "stemsep-legacy", "msst")

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

# What a value of `overlap` means (DESIGN §4). Every recommended overlap declares one of these.
#   divisor: integer N, hop = chunk_size // N        (msst num_overlap, audio-separator >= 0.45 Roformer/MDXC)
#   ratio:   0 <= r < 1, hop = (1 - r) * chunk_size  (MDX-Net ONNX, Demucs)
#   seconds: overlap length in seconds, hop = chunk_size - seconds * sample_rate
#            (audio-separator <= 0.44 Roformer)
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

ArtifactKind = Literal["checkpoint", "config", "code", "onnx", "other"]

# Where a recorded fact came from (`evidence[].kind`).
EvidenceKind = Literal["guide", "config", "homepage", "library", "measured", "legacy"]
