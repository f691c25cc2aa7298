"""A batch manifest: which inputs to separate with which model (`stemsep batch MANIFEST`).

Three forms, each a list of items {input, model, runtime}:
- JSON Lines: one object per line, `{"input": "a.flac", "model": "...", "runtime": "..."}` (model and runtime
  optional: the command's -m/--runtime, else the registry's default model);
- CSV with a header row naming `input` and optionally `model`, `runtime`;
- a folder: every audio file directly in it, with the command's model.
Relative input paths are relative to the manifest's own folder, so a manifest can travel with its audio.
Recipes are not accepted yet: a row naming one is refused (E_MANIFEST_INVALID) rather than run differently.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ExitCode, StemSepError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus")
FIELDS = ("input", "model", "runtime")


class ManifestError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_MANIFEST_INVALID"


@dataclass(frozen=True)
class Item:
    input: Path  # absolute
    model: str | None  # None: the command's -m, else the registry's default model
    runtime: str | None = None


def read_manifest(path: Path, model: str | None = None, runtime: str | None = None) -> list[Item]:
    """The manifest's items in order, each input made absolute; the same (input, model, runtime) twice is refused."""
    path = path.expanduser().absolute()
    if path.is_dir():
        rows: list[dict[str, object]] = [{"input": str(p)} for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        if not rows:
            raise ManifestError(f"{path} holds no audio files", why=f"looked for {', '.join(AUDIO_SUFFIXES)}",
                                hint="point at a folder of audio files, or a .jsonl/.csv manifest")
        base = path
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"cannot read the manifest {path}", why=str(exc),
                                hint="give a readable .jsonl or .csv file, or a folder of audio") from exc
        rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
        base = path.parent
    items: list[Item] = []
    seen: dict[Item, int] = {}
    for number, row in enumerate(rows, 1):
        item = _item(path, number, row, base, model, runtime)
        if item in seen:
            raise ManifestError(f"{path}: item {number} repeats item {seen[item]} ({item.input}, {item.model})",
                                why="each input is separated once per model",
                                hint="remove the repeated line")
        seen[item] = number
        items.append(item)
    if not items:
        raise ManifestError(f"{path} lists no inputs", hint="add one input per line")
    return items


def _jsonl_rows(path: Path, text: str) -> list[dict[str, object]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{number}: not a JSON object", why=exc.msg,
                                hint='write one object per line: {"input": "song.flac", "model": "..."}') from exc
        if not isinstance(row, dict):
            raise ManifestError(f"{path}:{number}: not a JSON object",
                                hint='write one object per line: {"input": "song.flac", "model": "..."}')
        rows.append(row)
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, object]]:
    reader = csv.DictReader(text.splitlines())
    if "input" not in (reader.fieldnames or []):
        raise ManifestError(f"{path}: the CSV header names no `input` column",
                            why=f"header: {', '.join(reader.fieldnames or []) or '(none)'}",
                            hint="start the file with a header row such as input,model,runtime")
    return [{k: v for k, v in row.items() if k is not None and v not in (None, "")} for row in reader]


def _item(path: Path, number: int, row: dict[str, object], base: Path, model: str | None,
          runtime: str | None) -> Item:
    where = f"{path}: item {number}"
    if "recipe" in row:
        raise ManifestError(f"{where} names a recipe", why="batches run models only for now",
                            hint="run recipes with `stemsep run RECIPE INPUT...`, or list models here")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}", hint=f"use only {', '.join(FIELDS)}")
    values: dict[str, str | None] = {}
    for key in FIELDS:
        value = row.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ManifestError(f"{where}: `{key}` must be a non-empty string", why=f"got {value!r}",
                                hint=f"fix the `{key}` of that item")
        values[key] = value  # a str or None, checked above
    if values["input"] is None:
        raise ManifestError(f"{where} has no `input`", hint="name the audio file of every item")
    given = Path(str(values["input"])).expanduser()
    return Item(input=given if given.is_absolute() else (base / given).absolute(),
                model=values["model"] or model, runtime=values["runtime"] or runtime)
