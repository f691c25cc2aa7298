"""The host declares each audio operation's inputs and params itself (registry/recipes/model.py: the host may
not import runtimes/ops); this checks that declaration against the worker's `runtimes.ops.OPS`: the same
ops, input roles, arity and params (name, type, required, choices, bounds). Defaults stay the worker's: an
unset param is left to the op (Phase Fix's band and weight: to the reference model's recommendation)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.recipes.model import OP_STEPS

ops = pytest.importorskip("runtimes.ops")  # numpy: the dev venv has it

JSON_TYPES = {"number": "float", "integer": "int", "string": "str"}


def host_params(step: Any) -> dict[str, dict[str, Any]]:
    """name -> {type, required, choices, minimum, maximum} read from the step's params model's JSON Schema."""
    schema = step.model_fields["params"].annotation.model_json_schema()
    required = set(schema.get("required", []))
    out = {}
    for name, prop in schema["properties"].items():
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        assert len(branches) == 1, (name, prop)
        b = branches[0]
        if b.get("type") == "array":
            kind = "float_list" if b["items"]["type"] == "number" else "?"
            bounds = b["items"]
        else:
            kind = JSON_TYPES["string" if "enum" in b else b["type"]]
            bounds = b
        out[name] = {"type": kind, "required": name in required, "choices": tuple(b.get("enum", ())),
                     "minimum": bounds.get("minimum"), "maximum": bounds.get("maximum")}
    return out


def worker_params(op: Any) -> dict[str, dict[str, Any]]:
    return {p.name: {"type": p.type, "required": p.required, "choices": tuple(p.choices),
                     "minimum": p.minimum, "maximum": p.maximum} for p in op.params}


def test_the_same_ops() -> None:
    assert set(OP_STEPS) == set(ops.OPS)


@pytest.mark.parametrize("name", sorted(OP_STEPS))
def test_inputs_and_params_agree(name: str) -> None:
    step, op = OP_STEPS[name], ops.OPS[name]
    assert step.roles == op.inputs, "input roles"
    assert (step.variadic, step.min_inputs) == (op.variadic, op.min_inputs), "arity"
    inputs = step.model_json_schema()["properties"]["inputs"]
    assert inputs.get("minItems", 0) == (op.min_inputs if op.variadic else len(op.inputs))
    assert inputs.get("maxItems") == (None if op.variadic else len(op.inputs))
    host, worker = host_params(step), worker_params(op)
    assert sorted(host) == sorted(worker), "param names"
    for param, facts in worker.items():
        mine = dict(host[param])
        if facts["type"] == "float" and mine["type"] == "int":
            mine["type"] = "float"
        if facts["minimum"] is not None and mine["minimum"] is not None:  # 0 and 0.0 are one bound
            mine["minimum"] = float(mine["minimum"])
            facts = {**facts, "minimum": float(facts["minimum"])}
        if facts["maximum"] is not None and mine["maximum"] is not None:
            mine["maximum"] = float(mine["maximum"])
            facts = {**facts, "maximum": float(facts["maximum"])}
        assert mine == facts, param
