"""The few facts preflight needs from a model's MSST config file, read without a YAML library.

The host does not depend on PyYAML (the runtimes' envs do), and preflight needs only which keys each
top-level section holds and a few scalar values (`model.stereo`, `audio.num_channels`). MSST configs
write those in block style: `section:` at column 0, its keys one indent deeper. This reader takes exactly
that much: lists, nested mappings and tags below a key are skipped, and a file it cannot follow (a
top-level flow mapping, tabs in the indentation) gives `None`, so preflight judges by the registry entry
alone rather than by a guess. Running the check in the env's Python instead would need a built env and a
process start on every preflight; the config is in the model store before the env exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

_KEY = re.compile(r"^([A-Za-z_][\w\-]*)\s*:(?:\s+(.*?))?\s*$")
MAX_BYTES = 1 << 20  # an MSST config is a few KiB; anything larger is not one


def read_sections(path: Path) -> Optional[dict[str, dict[str, Any]]]:
    """{section: {key: scalar value, or ... for a nested value}} of a block-style YAML file; None when the
    file cannot be read this way."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if len(raw) > MAX_BYTES:
        return None
    sections: dict[str, dict[str, Any]] = {}
    current: Optional[dict[str, Any]] = None
    child_indent: Optional[int] = None
    for line in text.splitlines():
        body = _strip_comment(line)
        if not body.strip() or body.strip() in ("---", "..."):
            continue
        indent = len(body) - len(body.lstrip(" "))
        if body[indent:indent + 1] == "\t":
            return None
        if indent == 0:
            match = _KEY.match(body)
            if match is None:
                return None  # a flow mapping or a document this reader does not follow
            name, value = match.group(1), match.group(2)
            current, child_indent = None, None
            if not value or value.startswith("!"):
                current = sections.setdefault(name, {})
            continue
        if current is None:
            continue
        if child_indent is None:
            child_indent = indent
        if indent != child_indent or body.lstrip().startswith("- "):
            continue  # deeper: a nested mapping or a list item of the key above
        match = _KEY.match(body.strip())
        if match:
            value = match.group(2)
            current[match.group(1)] = scalar(value) if value and not value.startswith(("!", "&", "*", "[", "{")) \
                else ...
    return sections


def scalar(text: str) -> Any:
    """A plain YAML 1.1 scalar as PyYAML's safe loader reads it (booleans, null, ints, floats, strings)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~"):
        return None
    for kind in (int, float):
        if kind is float and "." not in text:
            continue  # YAML 1.1 floats have a dot ("1e-3" is a string to PyYAML)
        try:
            return kind(text.replace("_", ""))
        except ValueError:
            pass
    return text


def dotted_keys(sections: dict[str, dict[str, Any]]) -> frozenset[str]:
    return frozenset(f"{section}.{key}" for section, keys in sections.items() for key in keys)


def is_mono(sections: dict[str, dict[str, Any]]) -> Optional[bool]:
    """The network takes one channel: `model.stereo: false` (Roformers) or `audio.num_channels: 1`; None when
    the file does not say (the registry entry decides then)."""
    stereo = sections.get("model", {}).get("stereo", ...)
    if isinstance(stereo, bool):
        return not stereo
    channels = sections.get("audio", {}).get("num_channels", ...)
    if isinstance(channels, int) and not isinstance(channels, bool):
        return channels == 1
    return None


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes stays)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()
