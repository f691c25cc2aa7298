"""Stem names as the registry spells them: runtimes name stems after their configs ("Vocals", "vocals",
"other"); where a name matches one of the model's declared stems ignoring case, the declared spelling
wins, so the same model gives the same file names on every runtime."""

from __future__ import annotations

from typing import Any, Mapping


def declared_stems(model: Mapping[str, Any]) -> list[str]:
    return [str(s) for s in (model.get("capabilities") or {}).get("stems") or []]


def registry_spelling(name: str, declared: list[str]) -> str:
    """The declared stem `name` is (UVR writes "No Noise" for the registry's no_noise), else `name`."""
    for stem in declared:
        if _spelling_key(stem) == _spelling_key(name):
            return stem
    return name


def _spelling_key(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").replace("_", " ").split())


def residual_stem(produced: list[str], declared: list[str]) -> str | None:
    """The stem a one-stem model gives as the rest of the mix (mix minus its stem): the one declared stem
    it does not produce, as msst's extract_instrumental and audio-separator's secondary stem do."""
    missing = [s for s in declared if s not in produced]
    return missing[0] if len(produced) == 1 and len(missing) == 1 else None
