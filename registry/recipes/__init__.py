"""Recipes: small graphs of model steps and audio operations (docs/recipes.md, "Recipes").

`model.py` is the typed recipe (pydantic; `registry/recipes.schema.json` is generated from it), with each audio
operation's inputs and params declared for the host (the worker's `runtimes/ops` declares the same; a test keeps
them in step); `graph.py` reads a recipe's structure (references, order, cycles, the stems each step makes);
`content.py` says what a stem holds and which model roles take it; `loader.py` reads recipe files.
The judgements about a recipe against a registry and a machine are preflight's (envmgr/preflight/).
"""
