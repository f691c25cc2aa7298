"""Where an artifact can be downloaded from, in the order to try.

`artifact.url` then `artifact.mirrors`; legacy entries have no artifact URL, so their primary artifact
falls back to `links.checkpoint` and their config artifact to `links.config`. Only http(s) URLs with a
host are used: a `file:` URL (or any other scheme) in a registry would read local files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from registry.view import ArtifactView, ModelView


def sources_for(entry: ModelView, artifact: ArtifactView) -> list[str]:
    urls = [u for u in (artifact.url, *artifact.mirrors) if u]
    if not urls:
        fallback = None
        if artifact == entry.artifacts.primary:  # equal, not identical: a frozen entry records all() apart
            fallback = entry.links.checkpoint
        elif artifact == entry.artifacts.config:
            fallback = entry.links.config
        urls = [fallback] if fallback else []
    return list(dict.fromkeys(u.strip() for u in urls))


def unusable_reason(url: str) -> str | None:
    """Why `url` cannot be downloaded from, or None when it can."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} is not allowed; only http and https are"
    if not parts.hostname:
        return "the URL has no host"
    return None
