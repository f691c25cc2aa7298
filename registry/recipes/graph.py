"""A recipe's structure: what each reference names, the order steps can run in, the cycles that forbid one,
and the stems each step makes. Pure functions of the recipe (and, for `separate` steps, of the stems the
model declares); the runner and preflight share them."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from registry.recipes.model import MIX, Recipe, SeparateStep, StepBase


def split_ref(ref: str) -> tuple[Optional[str], str]:
    """("step", "stem") for "step.stem"; (None, "mix") for the mix."""
    if ref == MIX:
        return None, MIX
    step, _, stem = ref.partition(".")
    return step, stem


def op_stem(step: StepBase) -> str:
    """The one stem an op step makes: the op's fixed name (invert: `rest`), else its first input's stem name
    (an ensemble of `vocals` makes `vocals`; a high-pass of the mix makes `mix`)."""
    if step.makes:
        return step.makes
    return split_ref(step.input_refs[0])[1]


def stems_made(step: StepBase, model_stems: Callable[[str], Optional[Sequence[str]]]) -> list[str]:
    """The stems `step` makes. `model_stems(model id)`: the model's declared stems (None: unknown model)."""
    if isinstance(step, SeparateStep):
        return list(model_stems(step.params.model) or ())
    return [op_stem(step)]


def dependencies(recipe: Recipe) -> dict[str, list[str]]:
    """step id -> the steps it reads from, in input order, each once (references to no step are left out)."""
    ids = {s.id for s in recipe.steps}
    out: dict[str, list[str]] = {}
    for s in recipe.steps:
        deps = [split_ref(r)[0] for r in s.input_refs]
        out[s.id] = list(dict.fromkeys(d for d in deps if d is not None and d in ids))
    return out


def find_cycle(recipe: Recipe) -> Optional[list[str]]:
    """A cycle of steps (`a -> b -> a` as ["a", "b", "a"]: each reads the next one's stems), or None."""
    deps = dependencies(recipe)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = 1
        path.append(node)
        for nxt in deps[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for s in recipe.steps:
        if s.id not in state:
            found = visit(s.id)
            if found:
                return found
    return None


def run_order(recipe: Recipe) -> list[str]:
    """The steps in an order where each runs after the steps it reads (ties keep the recipe's order). A step
    on a cycle is left out: it can never run."""
    deps = dependencies(recipe)
    done: list[str] = []
    placed: set[str] = set()
    progress = True
    while progress:
        progress = False
        for s in recipe.steps:
            if s.id not in placed and all(d in placed for d in deps[s.id]):
                done.append(s.id)
                placed.add(s.id)
                progress = True
    return done


def consumed(recipe: Recipe) -> set[str]:
    """Every reference some step or output reads."""
    refs: Iterable[str] = [r for s in recipe.steps for r in s.input_refs] + list(recipe.outputs.values())
    return set(refs)
