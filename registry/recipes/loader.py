"""Reading recipe files: the packaged `registry/recipes.json` and the user's `<config dir>/recipes/*.json`.

A file is `{"schema_version": 1, "recipes": [...]}` (registry/recipes.schema.json). Reading checks the
structure only (the typed model); whether a recipe's graph holds against the registry is preflight's
judgement (`stemsep recipes validate`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from registry.errors import ExitCode, StemSepError
from registry.findings import json_path
from registry.recipes.model import OP_NAMES, Recipe, RecipeFile

PACKAGED_RECIPES = Path(__file__).resolve().parent.parent / "recipes.json"
SCHEMA_PATH = PACKAGED_RECIPES.with_name("recipes.schema.json")
MAX_LISTED = 8  # problems quoted in one error


class RecipeReadError(StemSepError):
    """A recipe file is missing, unreadable or not JSON."""

    exit_code = ExitCode.USAGE
    code = "E_RECIPE_UNREADABLE"


class RecipeInvalidError(StemSepError):
    """A recipe file breaks the recipe schema (a misspelt key, an unknown op, a wrong number of inputs...)."""

    exit_code = ExitCode.INVALID
    code = "E_RECIPE_INVALID"


class UnknownRecipeError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_UNKNOWN_RECIPE"


class DuplicateRecipeError(StemSepError):
    exit_code = ExitCode.INVALID
    code = "E_DUPLICATE_RECIPE_ID"


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    path: Path


def user_recipe_files(config_dir: Path) -> list[Path]:
    """The user's recipe files: `<config dir>/recipes/*.json`, sorted by name."""
    folder = Path(config_dir) / "recipes"
    return sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []


def read_recipe_file(path: Path) -> RecipeFile:
    from pydantic import ValidationError

    from registry.jsonfile import RegistryReadError, read_json

    try:
        data = read_json(path)
    except RegistryReadError as err:
        raise RecipeReadError(f"cannot read recipe file {path}", why=err.message + (f": {err.why}" if err.why else ""),
                              hint="check the path; a recipe file is JSON (docs/recipes.md)") from err
    try:
        return RecipeFile.model_validate(data)
    except ValidationError as exc:
        problems = schema_problems(exc)
        more = f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise RecipeInvalidError(f"{path} is not a valid recipe file ({len(problems)} problem(s))",
                                 why="\n".join(problems[:MAX_LISTED]) + more,
                                 hint="fix the values at those JSON paths (the schema: registry/recipes.schema.json; "
                                 "docs/recipes.md)") from exc


def schema_problems(exc: Any) -> list[str]:
    """`$.recipes[0].steps[1].params.algorithm: Input should be ...` per pydantic error (the discriminator's
    op tag left out of the path)."""
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if len(loc) > 4 and loc[2] == "steps" and loc[4] in OP_NAMES:
            del loc[4]
        out.append(f"{json_path(loc)}: {err['msg']}")
    return out


def load_recipes(paths: Sequence[Path], *, skip_broken: Sequence[Path] = ()
                 ) -> tuple[dict[str, LoadedRecipe], list[tuple[Path, StemSepError]]]:
    """id -> recipe over `paths` in order; an id may be defined once. A file in `skip_broken` (the user's own)
    that cannot be read is left out and returned with its error; any other broken file raises."""
    found: dict[str, LoadedRecipe] = {}
    broken: list[tuple[Path, StemSepError]] = []
    skippable = {Path(p) for p in skip_broken}
    for path in paths:
        try:
            doc = read_recipe_file(Path(path))
            for recipe in doc.recipes:
                if recipe.id in found:
                    raise DuplicateRecipeError(f"recipe {recipe.id!r} is defined in {found[recipe.id].path} and "
                                               f"again in {path}", hint="rename one of them: a user recipe may add "
                                               "recipes, not replace a packaged one")
        except StemSepError as err:
            if Path(path) not in skippable:
                raise
            broken.append((Path(path), err))
            continue
        for recipe in doc.recipes:
            found[recipe.id] = LoadedRecipe(recipe, Path(path))
    return found, broken


def get(recipes: dict[str, LoadedRecipe], recipe_id: str) -> LoadedRecipe:
    if recipe_id in recipes:
        return recipes[recipe_id]
    from difflib import get_close_matches

    near = get_close_matches(recipe_id, list(recipes), n=3, cutoff=0.5)
    raise UnknownRecipeError(f"no recipe has the id {recipe_id!r}",
                             hint=(f"did you mean {', '.join(near)}? " if near else "") + "`stemsep recipes list` "
                             "shows them")


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of a recipe file, from the typed model (committed as registry/recipes.schema.json)."""
    schema = RecipeFile.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://stemsep.invalid/registry/recipes.schema.json", "title": "StemSep Runtime recipes",
            **schema}
