"""Which recipe files the CLI reads: the packaged `registry/recipes.json`, then the user's
`<config dir>/recipes/*.json` (sorted by name), as registries have their overlays. A user file that cannot be
read is left out with a warning on stderr (`stemsep recipes validate` names its problems); the packaged file
always stops the command."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from envmgr.config import config_dir

if TYPE_CHECKING:
    from pathlib import Path

    from registry.recipes.loader import LoadedRecipe
    from registry.recipes.model import Recipe


def recipe_files() -> tuple[list[Path], list[Path]]:
    """(packaged files, the user's files)."""
    from registry.recipes.loader import PACKAGED_RECIPES, user_recipe_files

    return [PACKAGED_RECIPES], user_recipe_files(config_dir())


def load() -> dict[str, LoadedRecipe]:
    """Every recipe this machine knows, by id (a broken user file reported on stderr and left out)."""
    from registry.recipes.loader import load_recipes

    packaged, user = recipe_files()
    recipes, broken = load_recipes(packaged + user, skip_broken=user)
    for path, err in broken:
        sys.stderr.write(f"warning: recipe file {path} is left out: {err.message}; `stemsep recipes validate "
                         f"{path}` lists its problems\n")
    return recipes


def load_recipe(text: str) -> Recipe:
    """A recipe id (of `load()`), or a recipe file holding one recipe (`stemsep run`, a batch manifest's rows)."""
    from pathlib import Path

    from registry.recipes.loader import RecipeInvalidError, read_recipe_file

    path = Path(text)
    if text.endswith(".json") or path.is_file():
        doc = read_recipe_file(path)
        if len(doc.recipes) != 1:
            raise RecipeInvalidError(f"{path} holds {len(doc.recipes)} recipes", why="a run takes one recipe",
                                     hint="put the recipe in a user recipe file (<config dir>/recipes/) and name it "
                                     "by id")
        return doc.recipes[0]
    return get_recipe(text)


def get_recipe(recipe_id: str) -> Recipe:
    """The packaged or user recipe with this id; E_UNKNOWN_RECIPE (with the nearest ids) when none has it."""
    from registry.recipes.loader import get

    return get(load(), recipe_id).recipe
