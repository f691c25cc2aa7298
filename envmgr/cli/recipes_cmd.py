"""`stemsep recipes list|show|validate`: the recipes this machine knows (packaged `registry/recipes.json`, then
`<config dir>/recipes/*.json`) and whether each holds against the registry (docs/recipes.md).

`validate` exits 0 when every recipe is valid, 1 when a file breaks the recipe schema or a recipe's graph,
model, runtime or settings does not hold (every reason printed), 2 when a file cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from envmgr.preflight.recipe import RecipeCheck

app = typer.Typer(no_args_is_help=True, help="List, show and validate recipes (multi-model graphs).")


@app.command("list")
def list_recipes(as_json: bool = typer.Option(False, "--json", help="Machine-readable list.")) -> None:
    """The recipes you can run: id, models, outputs."""
    from envmgr.catalog.recipe_files import load

    rows: list[dict[str, Any]] = []
    for item in load().values():
        r = item.recipe
        models = list(dict.fromkeys(getattr(s.params, "model") for s in r.steps if s.op == "separate"))
        rows.append({"id": r.id, "name": r.name, "models": models, "ops": [s.op for s in r.steps if s.op != "separate"],
                     "outputs": list(r.outputs), "file": str(item.path)})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("id", no_wrap=True)
    for column in ("models", "ops", "outputs"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["id"], ", ".join(row["models"]), ", ".join(dict.fromkeys(row["ops"])) or "-",
                      ", ".join(row["outputs"]))
    Console(highlight=False).print(table)


@app.command("show")
def show(recipe_id: str = typer.Argument(..., metavar="RECIPE", help="A recipe id (`stemsep recipes list`)."),
         as_json: bool = typer.Option(False, "--json", help="The recipe as JSON, with the stems each step makes.")
         ) -> None:
    """One recipe: its steps (what each reads and makes), outputs and notes."""
    from envmgr.catalog.recipe_files import load
    from envmgr.catalog.registry_files import load as load_registry
    from envmgr.preflight.recipe import check_recipe
    from registry.recipes.loader import get

    item = get(load(), recipe_id)
    check = check_recipe(item.recipe, load_registry())
    if as_json:
        data = {"file": str(item.path), "recipe": item.recipe.model_dump(mode="json", exclude_none=True),
                "makes": {sid: facts.makes for sid, facts in check.graph.steps.items()}}
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    r = item.recipe
    print(f"{r.id}: {r.name}" if r.name else r.id)
    if r.description:
        print(f"  {r.description}")
    print(f"  file: {item.path}")
    print("steps:")
    for step in r.steps:
        params = step.params.model_dump(exclude_none=True)
        what = params.pop("model", step.op) if step.op == "separate" else step.op
        params = {k: v for k, v in params.items() if v not in ({}, [])}
        extra = " " + json.dumps(params, sort_keys=True) if params else ""
        makes = ", ".join(check.graph.steps[step.id].makes) or "?"
        print(f"  {step.id}: {what}({', '.join(step.input_refs)}){extra} -> {makes}")
    print("outputs:")
    for name, ref in r.outputs.items():
        print(f"  {name} = {ref}")
    for note in r.notes:
        print(f"note: {note}")


@app.command("validate")
def validate(
    paths: Optional[list[Path]] = typer.Argument(None, metavar="[FILE]...", help="Recipe files. Default: the "
                                                 "packaged recipes and yours (<config dir>/recipes/*.json)."),
    as_json: bool = typer.Option(False, "--json", help="One report per recipe (the recipe preflight's format)."),
) -> None:
    """Check each recipe against the registry before anything runs: references resolve to stems the steps
    make, no cycle, roles fit, Phase Fix references are valid, each model has a runtime and its settings hold."""
    from envmgr.catalog.recipe_files import recipe_files
    from envmgr.catalog.registry_files import load as load_registry
    from envmgr.preflight.recipe import check_recipe, recipe_report
    from registry.errors import ExitCode
    from registry.recipes.loader import DuplicateRecipeError, RecipeInvalidError, read_recipe_file

    files = list(paths) if paths else [p for group in recipe_files() for p in group]
    registry = load_registry()
    results: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for path in files:
        entry: dict[str, Any] = {"path": str(path), "error": None, "recipes": []}
        results.append(entry)
        try:
            doc = read_recipe_file(path)  # unreadable: E_RECIPE_UNREADABLE, exit 2
        except RecipeInvalidError as err:
            entry["error"] = err.to_dict()
            continue
        for recipe in doc.recipes:
            check: RecipeCheck = check_recipe(recipe, registry)
            report = recipe_report(check, check.findings)
            if recipe.id in seen:
                dup = DuplicateRecipeError(f"recipe {recipe.id!r} is also defined in {seen[recipe.id]}",
                                           hint="rename one of them: a user recipe may add recipes, not replace one")
                report["errors"].append({**dup.to_dict(), "step": None, "blocking": True})
                report["can_proceed"] = False
            seen.setdefault(recipe.id, path)
            entry["recipes"].append(report)
    ok = all(e["error"] is None and all(r["can_proceed"] for r in e["recipes"]) for e in results)
    if as_json:
        sys.stdout.write(json.dumps({"ok": ok, "files": results}, indent=2, ensure_ascii=False) + "\n")
    else:
        _print(results, ok)
    if not ok:
        raise typer.Exit(int(ExitCode.INVALID))


def _print(results: list[dict[str, Any]], ok: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False, soft_wrap=True)
    recipes = bad = 0
    for entry in results:
        out.print(f"[bold]{escape(entry['path'])}[/]")
        if entry["error"]:
            bad += 1
            err = entry["error"]
            out.print(f"  [red]invalid file ({err['code']}): {escape(err['message'])}[/]")
            for line in err["why"].splitlines():
                out.print(f"    {escape(line)}")
            out.print(f"    what to do: {escape(err['hint'])}")
        for report in entry["recipes"]:
            recipes += 1
            bad += not report["can_proceed"]
            mark = "[green]valid[/]" if report["can_proceed"] else "[red]invalid[/]"
            out.print(f"  {mark} {escape(report['recipe'])}")
            for row in report["errors"] + report["warnings"]:
                colour = "red" if row["severity"] == "error" else "yellow"
                where = f"step {row['step']}: " if row.get("step") else ""
                out.print(f"    [{colour}]{row['code']}[/] {escape(where + row['message'])}")
                if row["severity"] == "error":
                    if row["why"]:
                        out.print(f"      why: {escape(row['why'])}")
                    if row["hint"]:
                        out.print(f"      what to do: {escape(row['hint'])}")
    verdict = "[green]valid[/]" if ok else "[red]invalid[/]"
    out.print(f"{verdict}: {len(results)} file(s), {recipes} recipe(s), {bad} invalid")
