"""Writing the machine config file: `stemsep env config set/unset`.

A value is parsed by the loader's own parser and the whole file checked as loading checks it before
anything is written (envmgr.config), so a file this writes always loads. The file is rewritten from its
values under a lock, to a temp file renamed into place: no TOML library that keeps comments is a
dependency (docs/DESIGN.md §10), so comments are not kept, and the command says so when it drops some.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.config import KEYS, config_file_path, env_var, file_layer, parse_value, read_config_file
from envmgr.errors import ConfigError, UnknownConfigKeyError, UsageError
from envmgr.fsutil import atomic_write_text, ensure_dir, store_error

HEADER = ("# StemSep machine configuration; the keys are described in docs/configuration.md.\n"
          "# Written by `stemsep env config set/unset`, which keep every value but not comments.\n")


@dataclass(frozen=True)
class Change:
    """One key's value in the file before and after a set/unset (None: not in the file)."""

    key: str
    before: Any  # the value loading gave it from the file and defaults (variables and flags aside)
    after: Any
    in_file_before: bool
    in_file_after: bool
    variable: str | None = None  # the STEMSEP_<KEY> variable set in this environment, which wins over the file

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.in_file_before != self.in_file_after


@dataclass(frozen=True)
class Edit:
    path: Path
    changes: list[Change]
    dropped_comments: bool = False  # the old file had comments, which the rewrite does not keep


def key_named(text: str) -> str:
    """The config key `text` names (dashes read as underscores, as the CLI flags spell them)."""
    name = text.strip().lower().replace("-", "_")
    if name in KEYS:
        return name
    near = difflib.get_close_matches(name, KEYS, n=1)
    raise UnknownConfigKeyError(f"no config key {text!r}", why=f"the keys are: {', '.join(KEYS)}",
                                hint=f"did you mean {near[0]}?" if near else
                                "`stemsep env config show` lists them with their values; docs/configuration.md "
                                "says what each does")


def set_value(name: str, values: list[str]) -> Edit:
    """Write `name = values` into the config file: one value, or one or more for a list key."""
    key = KEYS[key_named(name)]
    if not values:
        raise UsageError(f"no value given for {key.name}", hint=f"`stemsep env config unset {key.name}` removes it")
    if key.kind not in ("list", "paths") and len(values) > 1:
        raise UsageError(f"{key.name} takes one value, got {len(values)}: {' '.join(values)}",
                         why=f"{key.name} is not a list key", hint="quote a value that contains spaces")
    if key.name == "find_links":  # a local dir as the user sees it from here (uv runs elsewhere); URLs as given
        values = [v if "://" in v or not v.strip() else str(Path(v.strip()).expanduser().absolute()) for v in values]
    raw: Any = values if key.kind in ("list", "paths") else values[0]
    parsed = parse_value(key.name, raw, origin="`stemsep env config set`")
    if parsed is None:
        raise UsageError(f"empty value for {key.name}",
                         hint=f"`stemsep env config unset {key.name}` goes back to the default")
    return _edit({key.name: _plain(parsed)})


def unset_values(names: list[str]) -> Edit:
    """Remove keys from the config file (they go back to their defaults)."""
    return _edit({key_named(n): None for n in names})


def _edit(updates: dict[str, Any]) -> Edit:
    """Apply updates (None removes a key) to the config file under its lock; write only when something changed."""
    from filelock import FileLock

    path = config_file_path()
    ensure_dir(path.parent)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        old = read_config_file(path)
        new = {k: v for k, v in old.items() if k not in updates}
        new.update({k: v for k, v in updates.items() if v is not None})
        after = file_layer(new, path)
        try:
            before = file_layer(old, path)
        except ConfigError:  # a bad value is being replaced or removed: show it as the file has it
            before = {**file_layer({}, path), **old}
        # Normalised as loading normalises it (e.g. enforcement's case), so the file says what is in effect.
        for name, value in updates.items():
            if value is not None:
                new[name] = _plain(after[name])
        changes = [Change(name, before[name], after[name], name in old, name in new,
                          env_var(name) if env_var(name) in os.environ else None) for name in updates]
        dropped = False
        if any(c.changed for c in changes) or new != old:
            dropped = _has_own_comments(path)
            atomic_write_text(path, render(new))
    return Edit(path, changes, dropped_comments=dropped)


def _plain(value: Any) -> Any:
    """A parsed value as TOML holds it: paths as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


def _has_own_comments(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error(path, exc, "read") from exc
    return any(line.lstrip().startswith("#") and line not in HEADER.splitlines(keepends=True) for line in lines)


def render(values: dict[str, Any]) -> str:
    """config.toml for `values` (strings, booleans, whole numbers, lists of strings), keys in the documented order."""
    lines = [HEADER]
    for name in KEYS:
        if name in values:
            lines.append(f"{name} = {_toml(values[name])}\n")
    return "".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_string(str(v)) for v in value) + "]"
    raise TypeError(f"config values are strings, booleans, whole numbers or lists of strings, not "
                    f"{type(value).__name__}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
