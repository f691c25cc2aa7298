"""A batch manifest: which inputs to separate with which model or recipe (`stemsep batch MANIFEST`).

Three forms, each a list of items {input, model, runtime} or {input, recipe}:
- JSON Lines: one object per line, `{"input": "a.flac", "model": "...", "runtime": "..."}` or
  `{"input": "a.flac", "recipe": "..."}` (all optional but input: the command's -r, else its -m/--runtime, else
  the registry's default model);
- CSV with a header row naming `input` and optionally `model`, `runtime`, `recipe` (a row fills model or recipe);
- a folder: every audio file directly in it, with the command's model or recipe.
Relative input paths (and recipe files, `*.json`) are relative to the manifest's own folder, so a manifest can
travel with its audio. A recipe names its own models and runtimes: a row naming a recipe and a model or a
runtime is refused.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ExitCode, StemSepError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus")
FIELDS = ("input", "model", "runtime", "recipe")


class ManifestError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_MANIFEST_INVALID"


@dataclass(frozen=True)
class Item:
    input: Path  # absolute
    model: str | None  # None: the command's -m, else the registry's default model (or the item's recipe)
    runtime: str | None = None
    recipe: str | None = None  # a recipe id or an absolute recipe file: the item runs as `stemsep run` runs it


def read_manifest(path: Path, model: str | None = None, runtime: str | None = None,
                  recipe: str | None = None) -> list[Item]:
    """The manifest's items in order, each input made absolute; the same (input, model, runtime) or (input, recipe)
    twice is refused. `recipe` (-r) is for the items that name neither a model nor a recipe."""
    path = path.expanduser().absolute()
    if recipe is not None and (model is not None or runtime is not None):
        raise ManifestError("-r/--recipe and -m/--model or --runtime were both given",
                            why="items that name nothing would not know whether to run the recipe or the model",
                            hint="give -r for a manifest of recipe items, -m/--runtime for model items; a row can "
                            "still name its own model or recipe")
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
        item = _item(path, number, row, base, model, runtime, recipe)
        if item in seen:
            raise ManifestError(f"{path}: item {number} repeats item {seen[item]} "
                                f"({item.input}, {item.recipe or item.model})",
                                why="each input is run once per model or recipe",
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
          runtime: str | None, recipe: str | None) -> Item:
    where = f"{path}: item {number}"
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
    absolute = given if given.is_absolute() else (base / given).absolute()
    if values["recipe"] is not None:
        if values["model"] is not None or values["runtime"] is not None:
            raise ManifestError(f"{where} names a recipe and a model or runtime",
                                why="a recipe's steps name their own models and runtimes",
                                hint="give the item either `recipe` or `model`/`runtime`")
        return Item(input=absolute, model=None, recipe=_recipe_ref(values["recipe"], base))
    if recipe is not None and values["model"] is None and values["runtime"] is None:
        return Item(input=absolute, model=None, recipe=_recipe_ref(recipe, Path.cwd()))
    return Item(input=absolute, model=values["model"] or model, runtime=values["runtime"] or runtime)


def _recipe_ref(text: str, base: Path) -> str:
    """A recipe id as given; a recipe file (`*.json`) made absolute against `base`."""
    if not text.endswith(".json"):
        return text
    given = Path(text).expanduser()
    return str(given if given.is_absolute() else (base / given).absolute())
