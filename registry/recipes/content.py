"""What a stem in a recipe holds, and which of it a model's role can take: the facts behind preflight's
`E_RECIPE_ROLE_INPUT` (a de-reverb model fed an instrumental).

A stem's content is one of `mix` (the whole song), `vocals` (voice only), `instrumental` (the song without
its voice) or `other` (a part: drums, bass, a residue). It follows the graph:
- the mix is `mix`;
- a separation model (roles separation, karaoke) splits what it is fed: fed voice only, every stem it makes is
  voice (a karaoke model's `instrumental` of a vocal stem is the backing vocals); otherwise each stem is
  what its name says (VOCAL_STEMS, INSTRUMENTAL_STEMS, else `other`);
- a processing model (de-reverb, denoise, ...) cleans what it is fed: its stems hold that same content;
- an op keeps its inputs' content (the first input's where they differ); invert of the mix is the
  complement of the stem it removes (mix - vocals = instrumental).

ROLE_TAKES is the data: the registry's five de-reverb models all say "vocals only" (anvuew-dereverb-v2: "not
from full mixes"); the debleed models are made for instrumentals (unwa-debleed) or a mixture (gabox's
denoise/debleed). Other roles take anything. A model takes a content when any of its roles does.
"""

from __future__ import annotations

from typing import Iterable, Literal, Optional, Sequence

Content = Literal["mix", "vocals", "instrumental", "other"]

VOCAL_STEMS = frozenset({"vocals", "speech", "male", "female", "lead", "backing"})
INSTRUMENTAL_STEMS = frozenset({"instrumental"})
SEPARATION_ROLES = frozenset({"separation", "karaoke", "phase_fix_reference"})
ROLE_TAKES: dict[str, frozenset[str]] = {
    "dereverb": frozenset({"vocals"}),
    "debleed": frozenset({"instrumental", "mix"}),
}


def by_name(stem: str) -> Content:
    if stem in VOCAL_STEMS:
        return "vocals"
    if stem in INSTRUMENTAL_STEMS:
        return "instrumental"
    return "other"


def is_processing(roles: Iterable[str]) -> bool:
    """A model that cleans what it is fed (de-reverb, denoise...) rather than splitting it into parts."""
    roles = set(roles)
    return bool(roles) and not roles & SEPARATION_ROLES


def separated(roles: Sequence[str], fed: Content, stem: str) -> Content:
    """The content of `stem` made by a model with `roles` fed `fed`."""
    if is_processing(roles) or fed == "vocals":
        return fed
    return by_name(stem)


def combined(contents: Sequence[Content]) -> Content:
    return contents[0] if contents else "other"


def inverted(mix: Content, removed: Content) -> Content:
    if mix != "mix":
        return "other"
    return {"vocals": "instrumental", "instrumental": "vocals"}.get(removed, "other")  # type: ignore[return-value]


def roles_taking(roles: Sequence[str], content: Content) -> Optional[list[str]]:
    """None when a model with `roles` takes `content`; else the roles that refuse it (each constrains what
    it takes and none of them takes this)."""
    constrained = [r for r in roles if r in ROLE_TAKES]
    if not constrained or len(constrained) < len(set(roles)):  # an unconstrained role takes anything
        return None
    if any(content in ROLE_TAKES[r] for r in constrained):
        return None
    return constrained


def takes(role: str) -> list[str]:
    return sorted(ROLE_TAKES.get(role, ()))
