#!/usr/bin/env python3
"""Build `registry/models.json` from the legacy StemSep registry and our curated fact files.

    python scripts/data/build_registry.py LEGACY_MODELS_JSON [--out registry/models.json]
                                          [--reference-dir DIR] [--check]

Inputs
  LEGACY_MODELS_JSON  StemSep's `models.json.bak` (114 models; it lives outside the repo).
  scripts/data/facts/ our curated, reviewable facts: one YAML entry per model (`models.yaml`), shared
                      artifacts and phase-fix presets (`shared.yaml`), and the built-in models that
                      have no legacy entry (`builtin.yaml`). Every fact carries its evidence.
  --reference-dir     where `deton24_guide.txt` and `msst-configs/` live (default: the legacy file's
                      grandparent, i.e. shared/reference). When present, every evidence `quote` is
                      checked against the lines it cites; a quote that is not there fails the build.

Output: registry/models.json, written atomically, byte-identical for identical inputs (sorted keys,
models sorted by id). `--check` writes nothing and exits 1 when the committed file differs.

What is kept from the legacy file: the fields that mean something to a user (id, name, architecture,
type, description, tags, links, sdr/fullness/bleedless, vram_required). Crawl noise (catalog,
verification logs with signed URLs, card metrics, selection envelopes...) is dropped, and so is every
legacy routing default: StemSep marked every Roformer MSST-only by an architecture default, which is
wrong. The runtime policy below replaces it, and every model gets it from its curated `family`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from envmgr.fsutil import atomic_write_text
from registry.vocab import OVERLAP_MEANINGS, ROLES, EvidenceKind

REPO = Path(__file__).resolve().parents[2]
FACTS_DIR = Path(__file__).resolve().parent / "facts"
DEFAULT_OUT = REPO / "registry" / "models.json"
SCHEMA_VERSION = "2"
DEFAULT_MODEL = "builtin-center-split"

AS, MSST, LEGACY = "audio-separator", "msst", "stemsep-legacy"
CANONICAL = (AS, MSST, LEGACY)
EVIDENCE_KINDS: tuple[str, ...] = EvidenceKind.__args__  # type: ignore[attr-defined]
# The runtime library versions every recommended setting here was checked against (docs/DESIGN.md §4).
AS_PIN = "audio-separator==0.47.1"
MSST_VERSION = "0.1.0"

# ---------------------------------------------------------------------------------------------
# Runtime policy.
#
# `allowed` follows what each runtime's own code can build (read in the audio-separator 0.47.1 and
# msst 0.1.0 wheels), never the id or the name:
#   audio-separator 0.47.1  BS-/Mel-Band-Roformer (roformer/roformer_loader.py), MDX23C (MDXC),
#                           MDX-Net ONNX, VR, Demucs v4 bags (separator.py lists "only Demucs v4").
#                           No SCNet, BandIt, Apollo, Conformer or Mamba code at all.
#   msst 0.1.0              the model types of utils/settings.py:build_model_from_config.
#   stemsep-legacy          our runtime: the built-in DSP model and standard BS-/Mel-Band-Roformer
#                           loaded from MSST checkpoints + configs (docs/DESIGN.md §7).
# `preferred`: audio-separator when audio-separator 0.47.1 ships the model in its own supported
# list (models.json / models-scores.json: tested there, offline-capable, one env for every classic
# arch); otherwise msst, whose code the model's config was written for; otherwise the only runtime
# left. A model's facts may name another preference with its own evidence.
# ---------------------------------------------------------------------------------------------

WHY_NOT = {  # each follows "<runtime>: " in blocking_reason
    "no_as_arch": "version 0.47.1 has no code for this architecture (it runs only BS-/Mel-Band-Roformer, MDX23C, "
    "MDX-Net ONNX, VR and Demucs v4)",
    "no_msst_onnx": "version 0.1.0 has no MDX-Net v2/ONNX model type (build_model_from_config)",
    "no_msst_vr": "version 0.1.0 has no VR-architecture model type (build_model_from_config)",
    "no_legacy": "our runtime implements only the built-in DSP model and standard BS-/Mel-Band-Roformer",
    "no_msst_bag": "version 0.1.0 builds one htdemucs network per config, not a Demucs bag of models",
}


@dataclass(frozen=True)
class Family:
    """How a kind of model runs. `runtimes` is the allowed list; the first msst-capable etc. is decided by policy."""

    runtimes: tuple[str, ...]
    model_type: str | None  # MSST model_type for msst/stemsep-legacy (None when neither builds it)
    overlap_meaning: str  # meaning of recommended_settings.overlap (registry/vocab.py OVERLAP_MEANINGS)
    native: dict[str, str]  # each allowed runtime's native meaning of overlap (docs/DESIGN.md §4)
    blocked: dict[str, str]  # why each excluded canonical runtime cannot run it (keys of WHY_NOT or text)
    msst_extra: str | None = None  # msst's optional-dependency group for this model type
    overlap: float | int | None = None  # default recommended overlap, in `overlap_meaning`
    uvr: bool | None = None  # runs in UVR (the guide's GUI); informational
    evidence: tuple[str, ...] = ()  # keys into shared.yaml `evidence`
    stereo_io: bool = True  # stereo model whose runtimes up-mix mono input


ROFORMER_EXTRA = "bs-roformer,mel-band-roformer"  # one msst env for every Roformer (shared worker)
DIV = "divisor"
SCNET_TRAN_EXTRA = "scnet-tran,bs-roformer"  # see the scnet_tran family

FAMILIES: dict[str, Family] = {
    "bs_roformer": Family(
        (AS, MSST, LEGACY), "bs_roformer", DIV, {AS: DIV, MSST: DIV, LEGACY: DIV}, {}, ROFORMER_EXTRA, 4, True,
        ("as_roformer", "msst_types", "legacy_roformer", "overlap_roformer")),
    "mel_band_roformer": Family(
        (AS, MSST, LEGACY), "mel_band_roformer", DIV, {AS: DIV, MSST: DIV, LEGACY: DIV}, {}, ROFORMER_EXTRA, 4, True,
        ("as_roformer", "msst_types", "legacy_roformer", "overlap_roformer")),
    # Roformers that only msst runs: the facts say why (specific blocking_reason) and, where the model
    # needs its own code, declare it as a code artifact.
    "msst_roformer": Family(
        (MSST,), None, DIV, {MSST: DIV}, {}, ROFORMER_EXTRA, 4, None, ("msst_types", "overlap_roformer")),
    # Roformers with mask estimators of their own that stemsep-legacy implements (HyperACE v1/v2, FNO: issue 18)
    # and msst runs with the model's own code file: the facts set the model type and prefer stemsep-legacy.
    "own_code_roformer": Family(
        (MSST, LEGACY), None, DIV, {MSST: DIV, LEGACY: DIV}, {}, ROFORMER_EXTRA, 4, None,
        ("msst_types", "legacy_roformer_variants", "overlap_roformer")),
    "mdx23c": Family(
        (AS, MSST), "mdx23c", DIV, {AS: DIV, MSST: DIV}, {LEGACY: "no_legacy"}, None, 8, True,
        ("as_mdxc", "msst_types", "overlap_mdx23c")),
    "mdx_net": Family(
        (AS,), None, "ratio", {AS: "ratio"}, {MSST: "no_msst_onnx", LEGACY: "no_legacy"}, None, None, True,
        ("as_mdx", "overlap_mdx")),
    "vr": Family(
        (AS,), None, "none", {AS: "none"}, {MSST: "no_msst_vr", LEGACY: "no_legacy"}, None, None, True,
        ("as_vr",)),
    "htdemucs": Family(
        (AS, MSST), "htdemucs", "ratio", {AS: "ratio", MSST: DIV}, {LEGACY: "no_legacy"}, "htdemucs", 0.5, True,
        ("as_demucs", "msst_types", "overlap_demucs")),
    "htdemucs_bag": Family(
        (AS,), None, "ratio", {AS: "ratio"}, {MSST: "no_msst_bag", LEGACY: "no_legacy"}, None, 0.5, True,
        ("as_demucs", "overlap_demucs")),
    "scnet": Family(
        (MSST,), "scnet", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, None, 4, True,
        ("msst_types", "no_as_arch")),
    "scnet_masked": Family(
        (MSST,), "scnet_masked", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, None, 4, None,
        ("msst_types", "no_as_arch")),
    # msst 0.1.0's scnet_tran imports msst.models.bs_roformer.attend, and that package's __init__ imports
    # BSRoformer, which needs beartype: the scnet-tran extra lacks it, the bs-roformer extra brings it.
    "scnet_tran": Family(
        (MSST,), "scnet_tran", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, SCNET_TRAN_EXTRA, 4, None,
        ("msst_types", "no_as_arch")),
    "bandit": Family(
        (MSST,), "bandit", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, "bandit", 4, True,
        ("msst_types", "no_as_arch")),
    "bandit_v2": Family(
        (MSST,), "bandit_v2", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, "bandit-v2", 4, True,
        ("msst_types", "no_as_arch")),
    "apollo": Family(
        (MSST,), "apollo", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, "apollo", 4, None,
        ("msst_types", "no_as_arch")),
    "bs_conformer": Family(
        (MSST,), "bs_conformer", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, "bs-conformer", 4, None,
        ("msst_types", "no_as_arch")),
    "bs_mamba2": Family(
        (MSST,), "bs_mamba2", DIV, {MSST: DIV}, {AS: "no_as_arch", LEGACY: "no_legacy"}, "bs-mamba2", 4, None,
        ("msst_types", "no_as_arch")),
    "dsp": Family((LEGACY,), "dsp_center_split", "none", {LEGACY: "none"}, {}, None, None, None, (),
                  stereo_io=False),
    # Listed for reference only: no runtime here has code for it. `allowed` stays empty and the
    # facts give the reason (the entry carries `runtime.catalog_only: true`).
    "catalog": Family((), None, "none", {}, {}, None, None, None, ()),
}

SHA256 = re.compile(r"^[0-9a-f]{64}$")
GUIDE_SOURCE = re.compile(r"^deton24_guide\.txt:L(\d+)(?:-(\d+))?$")
CONFIG_SOURCE = re.compile(r"^msst-configs/([\w.\-]+\.yaml)$")

# Legacy fields worth keeping as they are (everything else is crawl noise or replaced by curation).
KEPT_LEGACY = ("id", "name", "architecture", "type", "description", "tags", "vram_required")
METRICS = ("sdr", "fullness", "bleedless")


class BuildError(Exception):
    """A fact file or the legacy file is not what the build needs; the message says where."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise BuildError(f"{path} is not valid YAML: {exc}") from exc


def url_basename(url: str) -> str:
    """The file name a URL serves (query ignored, percent-escapes decoded)."""
    return unquote(Path(urlparse(url).path).name)


def is_direct_file(url: str | None) -> bool:
    """True for URLs that serve a file, not a web page (repo page, folder, `blob` viewer, site root)."""
    if not url:
        return False
    parsed = urlparse(url)
    if parsed.netloc == "drive.usercontent.google.com":
        return "id=" in parsed.query
    name = Path(parsed.path).name
    if "/blob/" in parsed.path or "/tree/" in parsed.path or "." not in name:
        return False
    return True


def bare_filename(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")


# Empty values that carry meaning and stay in the file: "no runtime may run this", "no stems known".
KEEP_EMPTY = {("runtime", "allowed"), ("capabilities", "stems")}


def prune(value: Any, path: tuple[str, ...] = ()) -> Any:
    """Drop None values and empty containers so the file stays lean (the typed model supplies defaults)."""
    if isinstance(value, dict):
        out = {k: prune(v, path + (k,)) for k, v in value.items()}
        return {k: v for k, v in out.items()
                if path + (k,) in KEEP_EMPTY or (v is not None and v != {} and v != [])}
    if isinstance(value, list):
        return [prune(v, path) for v in value]
    return value


def evidence(fields: list[str], kind: str, source: str, note: str = "", quote: str | None = None) -> dict:
    item = {"fields": fields, "kind": kind, "source": source, "note": note}
    if quote:
        item["quote"] = quote
    return item


# ---------------------------------------------------------------------------------------------
# Artifacts
# ---------------------------------------------------------------------------------------------

def legacy_downloads(legacy: dict) -> dict[str, dict]:
    """The legacy download entries by kind (checkpoint/config), with verified sha256/size where known."""
    found: dict[str, dict] = {}
    for item in (legacy.get("download") or {}).get("artifacts") or []:
        kind = item.get("kind")
        if kind not in ("checkpoint", "config") or kind in found:
            continue
        verified = [s for s in item.get("sources") or [] if s.get("verified") and s.get("sha256")]
        found[kind] = {
            "filename": item.get("filename"),
            "url": item.get("source"),
            "mirrors": [s.get("url") for s in item.get("sources") or []
                        if s.get("url") and s.get("url") != item.get("source")],
            "sha256": verified[0]["sha256"] if verified else None,
            "size_bytes": verified[0].get("size_bytes") if verified else None,
        }
    return found


def artifact_kind(filename: str, role: str) -> str:
    if role == "config":
        return "config"
    return "onnx" if filename.lower().endswith(".onnx") else "checkpoint"


def build_artifact(mid: str, role: str, legacy_link: str | None, download: dict | None, override: dict | None,
                   ev: list[dict]) -> dict | None:
    """One artifact from the legacy link/download data, corrected by curated overrides.

    The URL is the truth about which file is meant: where the legacy filename disagrees with the
    file the URL serves, the filename is derived from the URL and the fix is recorded as evidence.
    """
    if override is not None and override.get("drop"):
        return None
    url = (override or {}).get("url") or legacy_link or (download or {}).get("url")
    if not is_direct_file(url):
        return None
    legacy_url = (download or {}).get("url")
    same_file = download is not None and legacy_url == url
    filename = (override or {}).get("filename")
    if filename is None:
        filename = url_basename(url) if urlparse(url).netloc != "drive.usercontent.google.com" else None
        if filename is None and same_file:
            filename = download.get("filename")
        if filename is None:
            raise BuildError(f"{mid}: {role} URL {url} does not name a file; give `filename` in the facts")
        old = (download or {}).get("filename")
        if same_file and old and old != filename:
            ev.append(evidence(["artifacts"], "legacy", f"models.json.bak#{mid}.download.artifacts[{role}]",
                               f"legacy filename {old!r} disagrees with the file its URL serves; filename derived "
                               f"from the URL ({filename!r})"))
    mirrors = list((override or {}).get("mirrors") or [])
    if same_file:
        mirrors += [m for m in download.get("mirrors", []) if is_direct_file(m)]
    elif legacy_url and legacy_url != url and legacy_url not in mirrors and is_direct_file(legacy_url):
        ev.append(evidence(["artifacts"], "legacy", f"models.json.bak#{mid}.download.artifacts[{role}]",
                           f"legacy download source {legacy_url} differs from the curated URL; not used"))
    art = {
        "kind": (override or {}).get("kind") or artifact_kind(filename, role),
        "filename": filename,
        "url": url,
        "mirrors": [m for i, m in enumerate(mirrors) if m != url and m not in mirrors[:i]],
        "sha256": (override or {}).get("sha256") or ((download or {}).get("sha256") if same_file else None),
        "size_bytes": (override or {}).get("size_bytes") or ((download or {}).get("size_bytes") if same_file else None),
    }
    if (override or {}).get("unsafe_pickle"):
        # Needs full unpickling (e.g. Demucs packages store classes): only with the user's consent.
        art["unsafe_pickle"] = True
    for extra in ("needed_by", "note"):
        if (override or {}).get(extra):
            art[extra] = override[extra]
    if not bare_filename(art["filename"]):
        raise BuildError(f"{mid}: artifact filename {art['filename']!r} is not a bare file name")
    if art["sha256"] is not None and not SHA256.match(art["sha256"]):
        raise BuildError(f"{mid}: sha256 {art['sha256']!r} is not 64 lowercase hex digits")
    if same_file and art["sha256"] and art["sha256"] == (download or {}).get("sha256"):
        ev.append(evidence(["artifacts"], "legacy", f"models.json.bak#{mid}.download.artifacts[{role}].sources",
                           "sha256/size verified by StemSep's crawl (source marked verified)"))
    return art


def build_artifacts(mid: str, legacy: dict, facts: dict, shared: dict, ev: list[dict]) -> dict:
    links = legacy.get("links") or {}
    downloads = legacy_downloads(legacy)
    overrides = facts.get("artifacts") or {}
    primary = build_artifact(mid, "checkpoint", links.get("checkpoint"), downloads.get("checkpoint"),
                             overrides.get("primary"), ev)
    config = build_artifact(mid, "config", links.get("config"), downloads.get("config"), overrides.get("config"), ev)
    additional = []
    for extra in overrides.get("additional") or []:
        art = build_artifact(mid, "additional", None, None, extra, ev)
        if art is None:
            raise BuildError(f"{mid}: additional artifact {extra} has no direct file URL")
        additional.append(art)
    for key in facts.get("code") or []:
        code = shared["code_artifacts"].get(key)
        if code is None:
            raise BuildError(f"{mid}: unknown code artifact {key!r} (define it in shared.yaml code_artifacts)")
        additional.append({k: v for k, v in code.items() if k not in ("evidence",)} | {"kind": "code"})
    return {"primary": primary, "config": config, "additional": additional}


# ---------------------------------------------------------------------------------------------
# One entry
# ---------------------------------------------------------------------------------------------

def shared_evidence(shared: dict, keys: tuple[str, ...] | list[str]) -> list[dict]:
    out = []
    for key in keys:
        item = shared["evidence"].get(key)
        if item is None:
            raise BuildError(f"unknown shared evidence key {key!r}")
        out.append(dict(item))
    return out


def runtime_block(mid: str, fam: Family, facts: dict) -> dict:
    allowed = list(fam.runtimes)
    for rt in facts.get("exclude_runtimes") or []:
        allowed.remove(rt)
    preferred = facts.get("preferred")
    if preferred is None and allowed:
        if AS in allowed and facts.get("audio_separator_lists"):
            preferred = AS
        elif MSST in allowed:
            preferred = MSST
        else:
            preferred = allowed[0]
    if preferred is not None and preferred not in allowed:
        raise BuildError(f"{mid}: preferred runtime {preferred!r} is not in allowed {allowed}")
    excluded = [rt for rt in CANONICAL if rt not in allowed]
    reason = facts.get("blocking_reason")
    if reason is None and excluded:
        parts = []
        for rt in excluded:
            why = fam.blocked.get(rt)
            if why is None:
                raise BuildError(f"{mid}: {rt} is excluded but neither the family nor the facts say why")
            parts.append(f"{rt}: {WHY_NOT.get(why, why)}")
        reason = "; ".join(parts) + "."
    block = {
        # Preferred first, then the rest in canonical order: what a plain `separate` would try.
        "allowed": sorted(allowed, key=lambda r: (r != preferred, CANONICAL.index(r))),
        "preferred": preferred,
        "blocking_reason": reason if excluded else None,
        "model_type": facts.get("model_type", fam.model_type),
    }
    if not allowed:
        block["catalog_only"] = True
    return block


def not_runnable(fam: Family, runtime: dict) -> dict:
    """A model whose weights have no recorded URL cannot run anywhere: list it, say why and what would run it."""
    where = ", ".join(fam.runtimes)
    kind = f" (model_type {runtime['model_type']})" if runtime.get("model_type") else ""
    return {
        "allowed": [],
        "preferred": None,
        "catalog_only": True,
        "model_type": runtime.get("model_type"),
        "blocking_reason": (
            "Not runnable yet: no direct download URL for its checkpoint is recorded (see known issues), so no "
            f"runtime can load it. Its architecture runs in {where}{kind} once the files are known: add them "
            "(artifacts.primary/config with url and sha256) in an overlay registry file."
            + (f" Otherwise: {runtime['blocking_reason']}" if runtime.get("blocking_reason") else "")),
    }


def duplicate_entry(original: str, runtime: dict) -> dict:
    """The same checkpoint registered twice: keep the id (legacy references resolve) and send users to the original."""
    return {
        "allowed": [],
        "preferred": None,
        "catalog_only": True,
        "duplicate_of": original,
        "model_type": runtime.get("model_type"),
        "blocking_reason": f"Same checkpoint and config as {original} (identical URLs): run `-m {original}` instead. "
                           "Kept so that references to this legacy id still resolve.",
    }


def requirements_block(fam: Family, facts: dict, allowed: list[str]) -> dict:
    pins = {}
    if AS in allowed:
        pins[AS] = AS_PIN
    if MSST in allowed:
        extra = facts.get("msst_extra", fam.msst_extra)
        pins[MSST] = f"msst[{extra}]=={MSST_VERSION}" if extra else f"msst=={MSST_VERSION}"
    steps = []
    for step in facts.get("manual_steps") or []:
        steps.append(step if isinstance(step, dict) else {"text": step})
    return {
        "python": facts.get("python"),
        "torch": {"required": facts.get("torch_required")},
        "pip": {"packages": facts.get("pip") or []}
        | ({"runtimes": facts["pip_runtimes"]} if facts.get("pip_runtimes") else {}),
        "manual_steps": steps,
        "runtime_pins": pins,
    }


def settings_block(mid: str, fam: Family, facts: dict, allowed: list[str], legacy: dict) -> tuple[dict, dict]:
    rec = {k: None for k in ("overlap", "shifts", "segment_size", "batch_size", "tta", "bit_depth")}
    rec["overlap"] = fam.overlap
    rec.update(facts.get("recommended") or {})
    meaning = facts.get("overlap_meaning", fam.overlap_meaning)
    if meaning not in OVERLAP_MEANINGS:
        raise BuildError(f"{mid}: overlap meaning {meaning!r} not in {OVERLAP_MEANINGS}")
    if meaning == "none":
        rec["overlap"] = None
    elif meaning == "divisor" and rec["overlap"] is not None and (int(rec["overlap"]) != rec["overlap"] or rec["overlap"] < 1):
        raise BuildError(f"{mid}: divisor overlap must be an integer >= 1, got {rec['overlap']}")
    elif meaning == "ratio" and rec["overlap"] is not None and not 0 <= rec["overlap"] < 1:
        raise BuildError(f"{mid}: ratio overlap must be in [0, 1), got {rec['overlap']}")
    native = {rt: fam.native[rt] for rt in allowed}
    notes = facts.get("settings_note") or {
        "divisor": "Integer N: chunks step by chunk_size // N (msst inference.num_overlap; audio-separator MDXC "
                   "and Roformer overlap). Higher is slower and smoother at chunk edges.",
        "ratio": "Fraction 0..1 of each window that overlaps the next (step = (1 - r) * window).",
        "none": "This model has no overlap parameter.",
        "seconds": "Overlap length in seconds.",
    }[meaning]
    legacy_overlap = ((legacy.get("recommended_settings") or {}).get("overlap")
                      or (legacy.get("chunk_overlap_policy") or {}).get("default_overlap"))
    if legacy_overlap is not None and meaning == "ratio" and legacy_overlap >= 1:
        notes += f" (The legacy registry stored {legacy_overlap}, a divisor; this family takes a ratio.)"
    return rec, {"overlap": {"meaning": meaning, "meaning_by_runtime": native, "notes": notes}}


PHASE_FIX_DEFAULT_USAGE = ("Reference (phase source) for Phase Fix / UVR Phase Swapper: separate with this vocal "
                           "model and with an instrumental model, then give this model's result as reference and "
                           "the instrumental as target (deton24_guide.txt L6105-6106).")


def phase_fix_block(mid: str, facts: dict, shared: dict) -> dict:
    pf = facts.get("phase_fix")
    if not pf:
        return {"is_valid_reference": False}
    params = pf.get("params", "uvr_default")
    if isinstance(params, str):
        params = shared["phase_fix_presets"].get(params)
        if params is None:
            raise BuildError(f"{mid}: unknown phase_fix preset {pf.get('params')!r}")
    params = {k: v for k, v in params.items() if k in ("lowHz", "highHz", "highFreqWeight")}
    low, high, weight = params.get("lowHz"), params.get("highHz"), params.get("highFreqWeight")
    if not (0 < low <= high <= 24000) or not (0 <= weight <= 4):
        raise BuildError(f"{mid}: phase_fix params {params} outside 0 < lowHz <= highHz <= 24000, 0 <= weight <= 4")
    usage = list(pf.get("usage") or [])
    usage.append(PHASE_FIX_DEFAULT_USAGE)
    return {"is_valid_reference": True, "recommended_params": params, "recommended_usage": usage}


def build_entry(mid: str, legacy: dict, facts: dict, shared: dict) -> dict:
    fam_name = facts.get("family")
    fam = FAMILIES.get(fam_name)
    if fam is None:
        raise BuildError(f"{mid}: unknown family {fam_name!r} (one of {sorted(FAMILIES)})")
    ev: list[dict] = []
    entry: dict[str, Any] = {k: legacy.get(k) for k in KEPT_LEGACY}
    entry["id"] = mid
    for key in ("name", "architecture", "type", "description", "tags"):
        if key in facts:
            entry[key] = facts[key]
    for key in METRICS:
        value = legacy.get(key)
        # StemSep wrote 0.0 where it had no measurement; a 0 SDR is not a fact, so it is left out.
        entry[key] = value if value not in (None, 0, 0.0) else None
    entry.update(facts.get("metrics") or {})

    artifacts = build_artifacts(mid, legacy, facts, shared, ev)
    links = dict(legacy.get("links") or {})
    links["homepage"] = facts.get("homepage") or links.get("homepage") or legacy.get("homepage")
    if artifacts["primary"]:  # links follow the curated artifacts (duplicates keep their legacy links)
        links["checkpoint"] = artifacts["primary"]["url"]
        links["config"] = artifacts["config"]["url"] if artifacts["config"] else None
    else:
        links["checkpoint"] = links["checkpoint"] if facts.get("duplicate_of") else None
        links["config"] = links.get("config") if facts.get("duplicate_of") else None
    entry["links"] = links

    runtime = runtime_block(mid, fam, facts)
    if facts.get("duplicate_of"):
        runtime, artifacts = duplicate_entry(facts["duplicate_of"], runtime), {}
    elif artifacts["primary"] is None and fam.runtimes and fam_name != "dsp":
        runtime = not_runnable(fam, runtime)
    allowed = runtime["allowed"]
    entry["runtime"] = runtime
    entry["requirements"] = requirements_block(fam, facts, allowed)
    rec, semantics = settings_block(mid, fam, facts, allowed, legacy)
    entry["recommended_settings"] = rec
    entry["settings_semantics"] = semantics

    roles = list(facts.get("roles") or ["separation"])
    phase_fix = phase_fix_block(mid, facts, shared)
    if phase_fix["is_valid_reference"] and "phase_fix_reference" not in roles:
        roles.append("phase_fix_reference")
    if "phase_fix_reference" in roles and not phase_fix["is_valid_reference"]:
        raise BuildError(f"{mid}: role phase_fix_reference without phase_fix facts")
    for role in roles:
        if role not in ROLES:
            raise BuildError(f"{mid}: role {role!r} not in {ROLES}")
    entry["phase_fix"] = phase_fix
    stems = facts.get("stems")
    if not stems and fam_name != "catalog":
        raise BuildError(f"{mid}: no stems given")
    stereo = facts.get("stereo", True if fam.stereo_io and fam_name != "catalog" else None)
    mono = facts.get("mono", stereo)  # stereo models: both runtimes up-mix mono input (shared evidence)
    entry["capabilities"] = {"stems": stems or [], "roles": roles, "supports_mono": mono, "supports_stereo": stereo}

    entry["compatibility"] = {
        "uvr_compatible": facts.get("uvr", fam.uvr),
        "audio_separator_compatible": AS in allowed,
        "msst_compatible": MSST in allowed,
        "known_issues": facts.get("known_issues") or [],
    }
    entry["artifacts"] = artifacts

    ev.extend(shared_evidence(shared, fam.evidence))
    if stereo and fam.stereo_io and "mono" not in facts:
        ev.extend(shared_evidence(shared, ("mono_upmix",)))
    for item in facts.get("evidence") or []:
        if item.get("kind") not in EVIDENCE_KINDS or not item.get("fields") or not item.get("source"):
            raise BuildError(f"{mid}: evidence needs fields, a source and a kind from {EVIDENCE_KINDS}: {item}")
        ev.append(dict(item))
    if facts.get("audio_separator_lists"):
        ev.append(evidence(["runtime.preferred"], "library", "audio-separator==0.47.1:audio_separator/"
                           + facts.get("audio_separator_source", "models-scores.json"),
                           f"audio-separator ships this model in its supported list as "
                           f"{facts['audio_separator_lists']!r}, so it is preferred"))
    entry["evidence"] = ev
    if facts.get("uvr_model_data"):  # MDX-Net/VR: UVR's parameters, written by the adapter under the file's hash
        if not any("uvr_model_data" in field for item in ev for field in item["fields"]):
            raise BuildError(f"{mid}: uvr_model_data without evidence naming its source")
        entry["uvr_model_data"] = dict(facts["uvr_model_data"])
    for extra in ("notes",):
        if facts.get(extra):
            entry[extra] = facts[extra]
    return prune(entry)


# ---------------------------------------------------------------------------------------------
# Cross-model checks and evidence verification
# ---------------------------------------------------------------------------------------------

def check_duplicate_primaries(entries: list[dict]) -> None:
    """Two models with one primary filename would be one file in two places: an error to curate away.

    The same checkpoint registered under two ids is recorded with `duplicate_of` on the copy (which then
    keeps no artifacts); anything else sharing a primary filename stops the build.
    """
    owners: dict[str, list[str]] = {}
    for entry in entries:
        primary = (entry.get("artifacts") or {}).get("primary")
        if primary:
            owners.setdefault(primary["filename"], []).append(entry["id"])
    clashes = {name: ids for name, ids in owners.items() if len(ids) > 1}
    if clashes:
        raise BuildError("primary filenames shared by several models (mark true copies with `duplicate_of`): "
                         + "; ".join(f"{name}: {ids}" for name, ids in sorted(clashes.items())))


def normalise(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip().lower()


def verify_quotes(entries: list[dict], reference_dir: Path) -> list[str]:
    """Every evidence `quote` must appear in the lines (or config file) it cites. Returns problems."""
    guide_path = reference_dir / "deton24_guide.txt"
    if not guide_path.is_file():
        return []
    guide = guide_path.read_text(encoding="utf-8").split("\n")
    problems = []
    for entry in entries:
        for item in entry.get("evidence") or []:
            quote, source = item.get("quote"), item.get("source", "")
            m = GUIDE_SOURCE.match(source)
            if item.get("kind") == "guide" and not m:
                problems.append(f"{entry['id']}: guide evidence source {source!r} is not deton24_guide.txt:L<n>[-<m>]")
                continue
            if m:
                first, last = int(m.group(1)), int(m.group(2) or m.group(1))
                if not 1 <= first <= last <= len(guide):
                    problems.append(f"{entry['id']}: {source} is outside the guide (1..{len(guide)})")
                    continue
                if quote and normalise(quote) not in normalise(" ".join(guide[first - 1:last])):
                    problems.append(f"{entry['id']}: quote {quote!r} not found in {source}")
            c = CONFIG_SOURCE.match(source)
            if c and quote:
                path = reference_dir / "msst-configs" / c.group(1)
                if not path.is_file() or normalise(quote) not in normalise(path.read_text(encoding="utf-8")):
                    problems.append(f"{entry['id']}: quote {quote!r} not found in {source}")
    return problems


# ---------------------------------------------------------------------------------------------
# Whole registry
# ---------------------------------------------------------------------------------------------

def build_registry(legacy_path: Path, facts_dir: Path = FACTS_DIR, reference_dir: Path | None = None) -> dict:
    try:
        legacy_doc = json.loads(legacy_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BuildError(f"cannot read legacy registry {legacy_path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise BuildError(f"legacy registry {legacy_path} is not JSON: line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from exc
    legacy = {m["id"]: m for m in legacy_doc.get("models") or []}
    facts = load_yaml(facts_dir / "models.yaml") or {}
    shared = load_yaml(facts_dir / "shared.yaml") or {}
    builtin = load_yaml(facts_dir / "builtin.yaml") or {}

    missing = sorted(set(legacy) - set(facts))
    unknown = sorted(set(facts) - set(legacy))
    if missing:
        raise BuildError(f"no curated facts for legacy models: {missing}")
    if unknown:
        raise BuildError(f"facts for models that are not in the legacy registry: {unknown}")

    entries = [build_entry(mid, legacy[mid], facts[mid], shared) for mid in sorted(legacy)]
    for mid, bfacts in sorted(builtin.items()):
        if mid in legacy:
            raise BuildError(f"built-in model {mid!r} collides with a legacy id")
        entries.append(build_entry(mid, bfacts.get("legacy_fields") or {}, bfacts, shared))
    entries.sort(key=lambda e: e["id"])
    check_duplicate_primaries(entries)

    if reference_dir is None:
        reference_dir = legacy_path.resolve().parent.parent
    problems = verify_quotes(entries, reference_dir)
    if problems:
        raise BuildError("evidence does not match its source:\n  " + "\n  ".join(problems))
    if DEFAULT_MODEL not in {e["id"] for e in entries}:
        raise BuildError(f"default model {DEFAULT_MODEL!r} is not defined (facts/builtin.yaml)")
    return {"schema_version": SCHEMA_VERSION, "default_model": DEFAULT_MODEL, "models": entries}


def render(registry: dict) -> str:
    return json.dumps(registry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("legacy", type=Path, help="StemSep's models.json.bak")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file (default: registry/models.json)")
    parser.add_argument("--reference-dir", type=Path, default=None,
                        help="dir with deton24_guide.txt and msst-configs/ (default: legacy file's grandparent)")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh build")
    args = parser.parse_args(argv)
    try:
        text = render(build_registry(args.legacy, reference_dir=args.reference_dir))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run scripts/data/build_registry.py {args.legacy}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    atomic_write_text(args.out, text)  # keeps the file's mode; a reader never sees half a registry
    print(f"wrote {args.out} ({text.count(chr(10))} lines, {len(json.loads(text)['models'])} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
