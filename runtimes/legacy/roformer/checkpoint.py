"""Reading MSST Roformer checkpoints safely, and explaining the ones that do not fit the config.

- Always `torch.load(weights_only=True)`: the file cannot run code. A file that needs full
  unpickling (pickled objects besides tensors and plain containers) is refused, unless the caller
  passes `allow_unsafe=True`, which the adapter sets only when the registry marks the artifact
  `unsafe_pickle` AND the user consented.
- Accepted shapes: a bare state dict, or one wrapped as {'state_dict': ...}, {'model': ...},
  {'state': ...} or {'model_state_dict': ...} (msst, Lightning and training-script variants); keys
  prefixed `module.` (DataParallel) are unprefixed. Non-tensor entries are dropped with a warning.
- Every key and shape is checked against what the config implies (layout.py). A mismatch names the
  missing/unexpected/misshaped keys and says what the checkpoint looks like instead.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from runtimes.legacy.roformer import layout
from runtimes.legacy.roformer.bands import BandLayout
from runtimes.legacy.roformer.config import ArchConfig
from runtimes.legacy.roformer.errors import CheckpointError, UnsafeCheckpointError

WRAPPER_KEYS = ("state_dict", "model", "state", "model_state_dict")
_SHOW = 6  # names listed per kind of mismatch


def read_state_dict(path: str | Path, *, allow_unsafe: bool = False,
                    warn: Callable[[str], None] = lambda message: None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by name, float32 on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", hint="run `stemsep preflight` to download it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)", hint="delete it and download it again")
    obj = _load(path, allow_unsafe, warn)
    state, wrapper = _unwrap(obj, path)
    tensors: dict[str, torch.Tensor] = {}
    dropped = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[str(name)] = value
        else:
            dropped.append(str(name))
    if dropped:
        warn(f"checkpoint {path.name}: ignored {len(dropped)} non-tensor entr{'y' if len(dropped) == 1 else 'ies'} "
             f"{_names(dropped)}")
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors" + (f" under {wrapper!r}" if wrapper else ""),
                              hint="this is not a model checkpoint; check the file you downloaded")
    if all(name.startswith("module.") for name in tensors):
        tensors = {name[len("module."):]: t for name, t in tensors.items()}
    return {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}


def _load(path: Path, allow_unsafe: bool, warn: Callable[[str], None]) -> Any:
    try:
        return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise _corrupt(path, exc) from None
        culprit = _unsafe_global(text) or _pickled_globals(path)
        if not allow_unsafe:
            raise UnsafeCheckpointError(
                f"checkpoint {path.name} needs full unpickling to load"
                + (f" (it contains the Python object {culprit})" if culprit else "")
                + ", which can run arbitrary code from the file; refused",
                hint="if you trust its source, mark the artifact `unsafe_pickle: true` in your registry overlay and "
                     "pass the consent flag; better, re-save it as a plain state dict (torch.save(model.state_dict()))",
            ) from None
        warn(f"checkpoint {path.name} loaded with full unpickling (registry flag unsafe_pickle + user consent)"
             + (f"; it contains {culprit}" if culprit else ""))
        try:
            return _torch_load(path, weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - anything the pickle runs may raise
            raise _corrupt(path, exc2) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise _corrupt(path, exc) from None


# Python objects a weights-only load may rebuild besides tensors: references to torch's own functions, which run
# nothing. neuraloperator stores its constructor arguments (`_metadata`, with `non_linearity=gelu`) in every FNO's
# state dict, so the FNO Roformer checkpoints hold one; we drop that entry after loading (non-tensor).
SAFE_GLOBALS = (torch._C._nn.gelu, torch.nn.functional.gelu)


def _torch_load(path: Path, weights_only: bool) -> Any:
    # mmap: tensors stay file-backed until the model copies them, so loading does not hold the file twice.
    with _safe_globals(weights_only):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # legacy (pre-zip) format cannot be memory-mapped: read it plainly
                raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def _safe_globals(weights_only: bool) -> Any:
    import contextlib

    scope = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if not weights_only or scope is None:
        return contextlib.nullcontext()
    return scope(list(SAFE_GLOBALS))


def _unsafe_global(text: str) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", text)  # torch names the first object it refused
    return match.group(1) if match else None


def _pickled_globals(path: Path) -> str | None:
    """The importable names a pickle refers to, read from its opcodes without executing anything."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        names: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - best effort: only used to word the error
        return None
    unusual = [n for n in dict.fromkeys(names) if not n.startswith(("torch.", "collections.OrderedDict"))]
    return ", ".join(unusual[:3]) or None


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointError(f"checkpoint {path.name} is truncated or corrupt ({type(exc).__name__}: {detail[:200]})",
                           hint="delete it and download it again; `stemsep preflight` verifies its sha256")


def _unwrap(obj: Any, path: Path) -> tuple[Mapping[str, Any], str | None]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path.name} holds a {type(obj).__name__}, not a state dict",
                              hint="save the model's weights with torch.save(model.state_dict(), path)")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, key
    return obj, None


def check_against(state: Mapping[str, torch.Tensor], arch: ArchConfig, bands: BandLayout, path: str | Path) -> None:
    """Raise a CheckpointError naming every key or shape the config does not expect."""
    variant = layout.variant_mismatch(state, arch.model_type)
    if variant:
        found = layout.detect_variant(state)
        raise CheckpointError(
            f"checkpoint {Path(path).name} does not fit model type {arch.model_type}: {variant}",
            hint=(f"set runtime.model_type to {found} (stemsep-legacy implements it), or use the registry entry made for "
                  "this model" if found else "use the checkpoint published with this model, or fix runtime.model_type"))
    expected = layout.expected_shapes(arch, bands)
    missing = [k for k in expected if k not in state and not layout.is_optional(k)]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in expected
                 if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {_names(unexpected)}")
    if misshaped:
        parts.append(f"{len(misshaped)} keys of another shape {_names(misshaped)}")
    raise CheckpointError(f"checkpoint {Path(path).name} does not match its config ({arch.model_type}): " + "; ".join(parts),
                          hint=diagnose(state, arch, bands))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return f"[{shown}{', ...' if len(names) > _SHOW else ''}]"


def diagnose(state: Mapping[str, torch.Tensor], arch: ArchConfig, bands: BandLayout) -> str:
    """What the checkpoint looks like, compared with the config: the likely variant and what to do."""
    names = list(state)
    if any(n.startswith("segm.") for n in names):
        return ("its `segm.` keys mark a model with a segmentation branch outside the mask estimators, which no "
                "published HyperACE code has; run it with the msst runtime and its own code")
    if any("pope" in n.lower() for n in names):
        return "its PoPE keys mark a polar-positional-embedding variant; run it with the msst runtime"
    for marker, variant in (("conformer", "BS/Mel-Conformer"), ("conv_module", "BS/Mel-Conformer"),
                            ("hyper_conn", "hyper-connection (experimental) Roformer"), ("mamba", "BS-Mamba2")):
        if any(marker in n for n in names):
            return f"its `{marker}` keys mark a {variant} checkpoint, which stemsep-legacy does not implement; use the msst runtime"
    seen = _shape_facts(state)
    if not seen:
        return "it has none of the Roformer keys (band_split, layers, mask_estimators): it is a different kind of model"
    want = {"family": arch.model_type, "depth": arch.depth, "bands": bands.num_bands, "dim": arch.dim,
            "num_stems": arch.num_stems, "heads x dim_head": arch.heads * arch.dim_head, "heads": arch.heads,
            "linear_transformer_depth>0": bool(arch.linear_transformer_depth),
            "mask MLP layers": len(layout.mlp_dims(arch, 1)), "mask MLP hidden": arch.dim * arch.mlp_expansion_factor}
    diffs = [f"{k}: checkpoint {seen[k]}, config {want[k]}" for k in want if k in seen and seen[k] != want[k]]
    if seen.get("family") and seen["family"] != arch.model_type:
        lead = (f"it is a {seen['family']} checkpoint (final_norm present)" if seen["family"] == "bs_roformer"
                else f"it is a {seen['family']} checkpoint (a norm after every transformer)")
        return f"{lead}, but the model type is {arch.model_type}: fix runtime.model_type or use its config. " + "; ".join(diffs)
    if diffs:
        return "the config does not describe this checkpoint (" + "; ".join(diffs) + "): use the config published with it"
    return "the checkpoint has layers this architecture does not have; use the config published with it, or the msst runtime"


def _shape_facts(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    names = list(state)
    if "final_norm.gamma" in state:
        facts["family"] = "bs_roformer"
    elif any(re.fullmatch(r"layers\.\d+\.\d+\.norm\.gamma", n) for n in names):
        facts["family"] = "mel_band_roformer"
    depth = {int(m.group(1)) for n in names if (m := re.match(r"layers\.(\d+)\.", n))}
    if depth:
        facts["depth"] = max(depth) + 1
    bands = {int(m.group(1)) for n in names if (m := re.match(r"band_split\.to_features\.(\d+)\.", n))}
    if bands:
        facts["bands"] = max(bands) + 1
    first = state.get("band_split.to_features.0.1.weight")
    if first is not None and first.ndim == 2:
        facts["dim"] = first.shape[0]
    stems = {int(m.group(1)) for n in names if (m := re.match(r"mask_estimators\.(\d+)\.", n))}
    if stems:
        facts["num_stems"] = max(stems) + 1
    for n in names:
        if n.endswith(".to_qkv.weight") and state[n].ndim == 2:
            facts["heads x dim_head"] = state[n].shape[0] // 3
        elif n.endswith(".to_gates.weight") and state[n].ndim == 2:
            facts["heads"] = state[n].shape[0]
    facts["linear_transformer_depth>0"] = any(n.endswith(".to_qkv.0.weight") for n in names)
    mlp = {int(m.group(1)) for n in names if (m := re.match(r"mask_estimators\.0\.to_freqs\.0\.0\.(\d+)\.weight", n))}
    if mlp:
        facts["mask MLP layers"] = len(mlp)
        hidden = state["mask_estimators.0.to_freqs.0.0.0.weight"]
        if len(mlp) > 1 and hidden.ndim == 2:
            facts["mask MLP hidden"] = hidden.shape[0]
    return facts
