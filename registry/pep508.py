"""PEP 508 requirement strings as the registry reads them: parsed once per distinct text.

A catalogue of thousands of fine-tunes repeats the same few pins and packages, and the validator's rules and
settings resolution parse each several times: parsing dominated a large overlay's validation
(scripts/bench/registry_scale.py). packaging is imported on first use: most starts parse nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from packaging.requirements import Requirement


@lru_cache(maxsize=4096)
def parse(text: str) -> Optional[Requirement]:
    """The parsed requirement, or None when `text` is not PEP 508. Shared between callers: read it, never change it."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def direct_reference(text: str) -> Optional[str]:
    """The URL or path a requirement installs from when it names one instead of a release on an index
    (`pkg @ https://...`, `pkg @ file:///...`, a bare path or URL), else None. Such a requirement installs
    whatever code is there: envmgr's preflight treats it like a code artifact."""
    requirement = parse(text)
    if requirement is not None:
        return requirement.url or None
    bare = text.strip().split()[0] if text.strip() else ""
    if "://" in bare or bare.startswith((".", "/", "~")) or bare.endswith((".whl", ".tar.gz", ".zip")):
        return bare
    return None


_FRAGMENT_HASH = re.compile(r"(?:^|&)sha256=([0-9a-fA-F]{64})(?:&|$)")
_OPTION_HASH = re.compile(r"--hash[= ]sha256:([0-9a-fA-F]{64})\b")


def pinned_sha256(text: str) -> Optional[str]:
    """The sha256 a direct-reference requirement pins its file to (the URL's `#sha256=` fragment, which pip and uv
    verify, or a requirements-file `--hash=sha256:`), lowercase; None when it pins none."""
    url = direct_reference(text) or ""
    found = _FRAGMENT_HASH.search(url.partition("#")[2]) or _OPTION_HASH.search(text)
    return found.group(1).lower() if found else None
