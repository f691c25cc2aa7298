"""Audio operations a recipe runs between its models: pure numpy, run in the light stemsep-legacy env.

`OPS` maps each op's name to its `Op` (inputs, params, source, `apply`). Worker side only: imports
numpy and the stdlib, never torch, librosa or scipy; the host never imports it (it reads the same facts
from the recipe schema). Formulas and sources: each module's docstring and docs/recipes.md.
"""

from __future__ import annotations

from runtimes.ops import ensemble, filters, phase_fix
from runtimes.ops.errors import OpError
from runtimes.ops.spec import Op, Param

OPS: dict[str, Op] = {op.name: op for op in (ensemble.OP, phase_fix.OP, filters.INVERT, filters.BAND_SPLIT,
                                             filters.HIGH_PASS)}

__all__ = ["OPS", "Op", "OpError", "Param"]
