"""One failing fixture per semantic rule: the valid fixture registry with one small change.

Each case names the rule, the change (a function mutating a copy of tests/fixtures/registry/valid.json)
and the JSON path the finding must carry. `python -m tests.registry.rule_cases OUT_DIR` writes every
case as its own registry file (OUT_DIR/<rule-id>.json), e.g. to try `stemsep registry validate` on them.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "registry"
VALID = FIXTURES / "valid.json"

# indexes of the models in valid.json
DSP, VIPERX, HYPERACE, DEMUCS, MDXNET, VR, CATALOG = range(7)


def valid_doc() -> dict[str, Any]:
    return json.loads(VALID.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Case:
    rule: str
    change: Callable[[dict], Any]
    path: str
    also: tuple[str, ...] = ()  # rules the change breaks as well, by nature (no change breaks this one alone)


def m(doc: dict, index: int) -> dict:
    return doc["models"][index]


def _set(index: int, dotted: str, value: Any) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = m(doc, index)
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return change


def _del(index: int, dotted: str) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = m(doc, index)
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        del node[leaf]
    return change


def _both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        for c in changes:
            c(doc)
    return change


def _dup_last_model_id(doc: dict) -> None:
    m(doc, CATALOG)["id"] = m(doc, VR)["id"]


def _dup_primary(doc: dict) -> None:  # two checkpoints of one format: only the name is wrong
    m(doc, HYPERACE)["artifacts"]["primary"]["filename"] = m(doc, VIPERX)["artifacts"]["primary"]["filename"]


def _p(index: int, tail: str) -> str:
    return f"$.models[{index}]" + tail


CASES: list[Case] = [
    # identity
    Case("id-slug", _set(VR, "id", "UVR DeEcho"), _p(VR, ".id")),
    Case("name-present", _set(VR, "name", "  "), _p(VR, ".name")),
    Case("architecture-known", _set(HYPERACE, "architecture", "BS Roformer"), _p(HYPERACE, ".architecture")),
    Case("id-unique", _dup_last_model_id, _p(CATALOG, ".id")),
    Case("primary-filename-duplicate", _dup_primary, _p(HYPERACE, ".artifacts.primary.filename")),
    Case("default-model-exists", lambda d: d.update(default_model="no-such-model"), "$.default_model"),
    # runtime
    Case("runtime-allowed-nonempty", _both(_set(MDXNET, "runtime.allowed", []), _del(MDXNET, "runtime.preferred"),
                                           _set(MDXNET, "requirements.runtime_pins", {})),
         _p(MDXNET, ".runtime.allowed")),
    Case("runtime-catalog-only-consistent", _set(DSP, "runtime.catalog_only", True),
         _p(DSP, ".runtime.catalog_only")),
    Case("runtime-allowed-unique", _set(DEMUCS, "runtime.allowed", ["audio-separator", "msst", "msst"]),
         _p(DEMUCS, ".runtime.allowed[2]")),
    Case("runtime-preferred-in-allowed", _set(HYPERACE, "runtime.preferred", "audio-separator"),
         _p(HYPERACE, ".runtime.preferred")),
    Case("runtime-blocking-reason", _set(HYPERACE, "runtime.blocking_reason", None),
         _p(HYPERACE, ".runtime.blocking_reason")),
    Case("compatibility-audio-separator", _set(HYPERACE, "compatibility.audio_separator_compatible", True),
         _p(HYPERACE, ".compatibility.audio_separator_compatible")),
    Case("compatibility-msst", _set(VIPERX, "compatibility.msst_compatible", False),
         _p(VIPERX, ".compatibility.msst_compatible")),
    Case("runtime-model-type", _set(DEMUCS, "runtime.model_type", None), _p(DEMUCS, ".runtime.model_type")),
    # a mono Roformer: msst 0.1.0 (and audio-separator) always feed it two channels
    Case("runtime-capable", _set(VIPERX, "capabilities.supports_stereo", False), _p(VIPERX, ".runtime.allowed[1]")),
    # requirements
    Case("python-version-valid", _set(VIPERX, "requirements.python.min", "three"),
         _p(VIPERX, ".requirements.python.min")),
    Case("python-range-order", _set(VIPERX, "requirements.python.min", "3.14"),
         _p(VIPERX, ".requirements.python.min")),
    Case("torch-version-valid", _set(VIPERX, "requirements.torch.max", "2.x"), _p(VIPERX, ".requirements.torch.max")),
    Case("torch-range-order", _set(VIPERX, "requirements.torch.max", "1.13"), _p(VIPERX, ".requirements.torch.min")),
    Case("torch-cuda-tag", _set(VIPERX, "requirements.torch.cuda", ["cu121", "cuda12.1"]),
         _p(VIPERX, ".requirements.torch.cuda[1]")),
    Case("torch-rocm-tag", _set(VIPERX, "requirements.torch.rocm", ["ROCm 6"]),
         _p(VIPERX, ".requirements.torch.rocm[0]")),
    Case("torch-required-runtime", _set(VIPERX, "requirements.torch.required", False),
         _p(VIPERX, ".requirements.torch.required")),
    Case("pip-requirement-valid", _set(HYPERACE, "requirements.pip", {"packages": ["neuraloperator=1.0.2"]}),
         _p(HYPERACE, ".requirements.pip.packages[0]")),
    Case("pip-requirement-duplicate",
         _set(HYPERACE, "requirements.pip", {"packages": ["neuraloperator==1.0.2", "NeuralOperator<2"]}),
         _p(HYPERACE, ".requirements.pip.packages[1]")),
    Case("runtime-pin-valid", _set(DEMUCS, "requirements.runtime_pins.msst", "demucs==4.0.1"),
         _p(DEMUCS, ".requirements.runtime_pins.msst")),
    Case("runtime-pin-exact", _set(DEMUCS, "requirements.runtime_pins.audio-separator", "audio-separator>=0.47"),
         _p(DEMUCS, '.requirements.runtime_pins["audio-separator"]')),
    Case("runtime-pin-allowed", _set(VR, "requirements.runtime_pins.msst", "msst==0.1.0"),
         _p(VR, ".requirements.runtime_pins.msst")),
    Case("manual-step-automated-by",
         _set(HYPERACE, "requirements.manual_steps", [{"text": "replace bs_roformer.py", "automated_by": "other.py"}]),
         _p(HYPERACE, ".requirements.manual_steps[0].automated_by")),
    # settings
    Case("overlap-meaning-vocab", _set(VIPERX, "settings_semantics.overlap.meaning_by_runtime.msst", "auto"),
         _p(VIPERX, ".settings_semantics.overlap.meaning_by_runtime.msst")),
    Case("overlap-meaning-runtime-keys", _set(VIPERX, "settings_semantics.overlap.meaning_by_runtime.uvr", "divisor"),
         _p(VIPERX, ".settings_semantics.overlap.meaning_by_runtime.uvr")),
    Case("overlap-meaning-declared", _del(VIPERX, "settings_semantics.overlap.meaning"),
         _p(VIPERX, ".settings_semantics.overlap.meaning")),
    Case("overlap-value-fits-meaning", _set(DEMUCS, "recommended_settings.overlap", 4),
         _p(DEMUCS, ".recommended_settings.overlap")),
    Case("overlap-divisor-integer", _set(VIPERX, "recommended_settings.overlap", 4.0),
         _p(VIPERX, ".recommended_settings.overlap")),
    # ratio 0.25 is a hop of 0.75 of the chunk: msst's nearest divisor is 1, no overlap at all
    Case("overlap-keeps-overlap", _set(DEMUCS, "recommended_settings.overlap", 0.25),
         _p(DEMUCS, ".recommended_settings.overlap")),
    # audio-separator's MDX-Net chunk is hop_length * (segment_size - 1): one frame is no chunk
    Case("recommended-native-range", _set(MDXNET, "recommended_settings.segment_size", 1),
         _p(MDXNET, ".recommended_settings.segment_size")),
    Case("overlap-native-matches-table", _set(DEMUCS, "settings_semantics.overlap.meaning_by_runtime.msst", "ratio"),
         _p(DEMUCS, ".settings_semantics.overlap.meaning_by_runtime.msst")),
    Case("settings-table-covers", _both(_set(VR, "runtime.allowed", ["audio-separator", "msst"]),
                                        _set(VR, "runtime.model_type", "vr")),
         _p(VR, ".runtime.allowed[1]"), also=("runtime-capable",)),  # msst has no VR code, so no settings either
    Case("recommended-settings-range", _set(VIPERX, "recommended_settings.batch_size", 0),
         _p(VIPERX, ".recommended_settings.batch_size")),
    Case("recommended-bit-depth", _set(VIPERX, "recommended_settings.bit_depth", 20),
         _p(VIPERX, ".recommended_settings.bit_depth")),
    # phase fix
    Case("phase-fix-frequency-range", _set(VIPERX, "phase_fix.recommended_params.highHz", 400),
         _p(VIPERX, ".phase_fix.recommended_params.lowHz")),
    Case("phase-fix-weight-range", _set(VIPERX, "phase_fix.recommended_params.highFreqWeight", 4.5),
         _p(VIPERX, ".phase_fix.recommended_params.highFreqWeight")),
    Case("phase-fix-role-consistent", _set(VIPERX, "capabilities.roles", ["separation"]),
         _p(VIPERX, ".capabilities.roles")),
    Case("phase-fix-params-need-reference",
         _set(HYPERACE, "phase_fix", {"recommended_params": {"lowHz": 500, "highHz": 5000}}),
         _p(HYPERACE, ".phase_fix.recommended_params")),
    # capabilities
    Case("capabilities-stems-declared", _set(DEMUCS, "capabilities.stems", []), _p(DEMUCS, ".capabilities.stems")),
    Case("capabilities-roles-declared", _set(DEMUCS, "capabilities.roles", []), _p(DEMUCS, ".capabilities.roles")),
    Case("capabilities-stem-names", _set(DEMUCS, "capabilities.stems", ["drums", "Bass"]),
         _p(DEMUCS, ".capabilities.stems[1]")),
    Case("capabilities-roles-unique", _set(DEMUCS, "capabilities.roles", ["separation", "separation"]),
         _p(DEMUCS, ".capabilities.roles[1]")),
    Case("capabilities-channels", _both(_set(DSP, "capabilities.supports_stereo", False),
                                        _set(DSP, "capabilities.supports_mono", False)),
         _p(DSP, ".capabilities")),
    # artifacts
    Case("artifact-filename-bare", _set(VIPERX, "artifacts.config.filename", "../configs/viperx.yaml"),
         _p(VIPERX, ".artifacts.config.filename")),
    Case("artifact-sha256-format", _set(VIPERX, "artifacts.primary.sha256", "8726E21A"),
         _p(VIPERX, ".artifacts.primary.sha256")),
    Case("artifact-filename-unique", _set(VIPERX, "artifacts.config.filename", "model_bs_roformer_ep_317_sdr_12.9755.ckpt"),
         _p(VIPERX, ".artifacts.config.filename")),
    Case("artifact-url-scheme", _set(VIPERX, "artifacts.primary.mirrors", ["ftp://example.invalid/m.ckpt"]),
         _p(VIPERX, ".artifacts.primary.mirrors[0]")),
    Case("links-url-scheme", _set(VIPERX, "links.homepage", "huggingface.co/viperx"), _p(VIPERX, ".links.homepage")),
    Case("artifact-primary-present", _set(VR, "artifacts", {"primary": None}), _p(VR, ".artifacts.primary")),
    Case("artifact-kind-slot", _set(VIPERX, "artifacts.config.kind", "checkpoint"), _p(VIPERX, ".artifacts.config.kind")),
    Case("code-artifact-complete", lambda d: m(d, HYPERACE)["artifacts"]["additional"][0].pop("class_name"),
         _p(HYPERACE, ".artifacts.additional[0].class_name")),
    Case("code-artifact-model-type", _set(HYPERACE, "runtime.model_type", "bs_roformer"),
         _p(HYPERACE, ".runtime.model_type")),
    Case("code-artifact-pinned", lambda d: m(d, HYPERACE)["artifacts"]["additional"][0].update(sha256=None),
         _p(HYPERACE, ".artifacts.additional[0].sha256")),
    Case("runtime-scope-allowed", lambda d: m(d, HYPERACE)["artifacts"]["additional"][0].update(
        runtimes=["audio-separator"]), _p(HYPERACE, ".artifacts.additional[0].runtimes[0]")),
    Case("artifact-unsafe-pickle-kind", _set(VIPERX, "artifacts.config.unsafe_pickle", True),
         _p(VIPERX, ".artifacts.config.unsafe_pickle")),
    Case("artifact-size-positive", _set(VIPERX, "artifacts.primary.size_bytes", 0),
         _p(VIPERX, ".artifacts.primary.size_bytes")),
    # UVR model data (MDX-Net, VR)
    Case("uvr-params-present", _del(MDXNET, "uvr_model_data.compensate"), _p(MDXNET, ".uvr_model_data")),
    Case("uvr-hash-format", _set(VR, "uvr_model_data.uvr_hash", "0FB9249F"), _p(VR, ".uvr_model_data.uvr_hash")),
    # evidence
    Case("evidence-present", _set(VR, "evidence", []), _p(VR, ".evidence")),
    Case("evidence-fields-known", _set(VR, "evidence", [{"fields": ["runtimes"], "kind": "homepage",
                                                        "source": "https://example.invalid/uvr"}]),
         _p(VR, ".evidence[0].fields[0]")),
    Case("evidence-source-format", _set(VR, "evidence", [{"fields": ["runtime"], "kind": "guide",
                                                         "source": "the guide, somewhere"}]),
         _p(VR, ".evidence[0].source")),
]


def broken_doc(case: Case) -> dict[str, Any]:
    doc = copy.deepcopy(valid_doc())
    case.change(doc)
    return doc


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        (out / f"{case.rule}.json").write_text(json.dumps(broken_doc(case), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(CASES)} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
