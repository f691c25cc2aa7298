"""The curated registry data itself: registry/models.json read as plain JSON.

These tests assert the rules of issue 2 item 4 and the curated facts of item 5 directly on the file,
independently of the validator, so a bad edit of the data (or of its build script) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from registry.model import RegistryFile
from registry.vocab import OVERLAP_MEANINGS, ROLES, RUNTIME_IDS, EvidenceKind

REPO = Path(__file__).resolve().parents[2]
MODELS_JSON = REPO / "registry" / "models.json"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GUIDE = re.compile(r"^deton24_guide\.txt:L(\d+)(?:-(\d+))?$")
EVIDENCE_KINDS = set(EvidenceKind.__args__)  # type: ignore[attr-defined]
AS, MSST, LEGACY = "audio-separator", "msst", "stemsep-legacy"


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(MODELS_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models(doc) -> dict[str, dict]:
    return {m["id"]: m for m in doc["models"]}


def artifacts_of(model: dict) -> list[tuple[str, dict]]:
    arts = model.get("artifacts") or {}
    found = [(slot, arts[slot]) for slot in ("primary", "config") if arts.get(slot)]
    return found + [(f"additional[{i}]", a) for i, a in enumerate(arts.get("additional") or [])]


# --- shape -------------------------------------------------------------------------------------

def test_top_level_and_default_model(doc, models):
    assert set(doc) == {"schema_version", "default_model", "models"}
    assert doc["default_model"] == "builtin-center-split" and "builtin-center-split" in models
    assert len(doc["models"]) >= 115


def test_ids_unique_slugs_sorted(doc):
    ids = [m["id"] for m in doc["models"]]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids), "models are written sorted by id (deterministic diffs)"
    assert [i for i in ids if not SLUG.match(i)] == []


def test_loads_into_the_typed_model(doc):
    registry = RegistryFile.model_validate(doc)
    assert len(registry.models) == len(doc["models"])


def test_every_legacy_model_is_present(models, legacy_registry_path):
    legacy = json.loads(legacy_registry_path.read_text(encoding="utf-8"))
    legacy_ids = {m["id"] for m in legacy["models"]}
    assert len(legacy_ids) == 114
    assert legacy_ids - set(models) == set()
    assert set(models) - legacy_ids == {"builtin-center-split"}


def test_crawl_noise_is_dropped(models):
    for noisy in ("catalog", "verification", "card_metrics", "selection_envelope", "download", "legacy_artifacts"):
        assert [m for m in models.values() if noisy in m] == [], noisy
    assert "X-Amz-Signature" not in MODELS_JSON.read_text(encoding="utf-8")


# --- runtime routing data ----------------------------------------------------------------------

def test_preferred_in_allowed_and_allowed_nonempty_unless_catalog(models):
    for mid, m in models.items():
        rt = m["runtime"]
        assert set(rt["allowed"]) <= set(RUNTIME_IDS), mid
        assert len(rt["allowed"]) == len(set(rt["allowed"])), mid
        if rt["allowed"]:
            assert rt["preferred"] in rt["allowed"], mid
            assert rt["allowed"][0] == rt["preferred"], f"{mid}: allowed lists the preferred runtime first"
            assert not rt.get("catalog_only"), mid
        else:
            assert rt.get("catalog_only") is True and rt.get("preferred") is None, mid
            assert rt["blocking_reason"].strip(), mid


def test_blocking_reason_whenever_a_canonical_runtime_is_excluded(models):
    for mid, m in models.items():
        excluded = set(RUNTIME_IDS) - set(m["runtime"]["allowed"])
        if excluded:
            reason = m["runtime"].get("blocking_reason") or ""
            assert len(reason) > 30, f"{mid}: excluded {sorted(excluded)} without a real reason"
        assert "MSST-only in strict-spec mode" not in (m["runtime"].get("blocking_reason") or ""), \
            f"{mid}: the legacy blanket Roformer default must not be inherited"


def test_compatibility_agrees_with_allowed(models):
    for mid, m in models.items():
        compat, allowed = m["compatibility"], m["runtime"]["allowed"]
        assert compat["audio_separator_compatible"] is (AS in allowed), mid
        assert compat["msst_compatible"] is (MSST in allowed), mid


def test_msst_models_name_their_model_type(models):
    for mid, m in models.items():
        if MSST in m["runtime"]["allowed"] or LEGACY in m["runtime"]["allowed"]:
            assert m["runtime"].get("model_type"), mid


def test_standard_roformers_run_in_audio_separator_msst_and_stemsep_legacy(models):
    standard = [m for m in models.values() if m["runtime"].get("model_type") in ("bs_roformer", "mel_band_roformer")
                and m["runtime"]["allowed"]]
    assert len(standard) >= 60
    for m in standard:
        if m["capabilities"].get("supports_stereo") is False:  # a mono Roformer: only our runtime runs it
            assert m["runtime"]["allowed"] == [LEGACY] and "msst:" in m["runtime"]["blocking_reason"], m["id"]
        elif len(m["runtime"]["allowed"]) == 1:  # msst-only Roformers carry their specific reason
            assert m["runtime"]["allowed"] == [MSST] and "audio-separator:" in m["runtime"]["blocking_reason"]
        else:
            assert set(m["runtime"]["allowed"]) == {AS, MSST, LEGACY}, m["id"]
    assert sum(AS in m["runtime"]["allowed"] for m in models.values()) >= 60


def test_runtime_pins_parse_and_match_allowed(models):
    for mid, m in models.items():
        pins = (m.get("requirements") or {}).get("runtime_pins") or {}
        allowed = m["runtime"]["allowed"]
        assert set(pins) == set(allowed) - {LEGACY}, mid
        for runtime, pin in pins.items():
            req = Requirement(pin)
            assert req.name == runtime
            version = {AS: "0.47.1", MSST: "0.1.0"}[runtime]
            assert str(req.specifier) == f"=={version}", mid


def test_pip_packages_and_version_ranges_parse(models):
    for mid, m in models.items():
        req = m.get("requirements") or {}
        for pkg in (req.get("pip") or {}).get("packages") or []:
            Requirement(pkg)
        for key in ("python", "torch"):
            rng = req.get(key) or {}
            lo, hi = rng.get("min"), rng.get("max")
            if lo and hi:
                assert Version(lo) <= Version(hi), mid
            for bound in (lo, hi):
                if bound:
                    Version(bound)
    assert models["unwa-inst-fno"]["requirements"]["pip"] == {"packages": ["neuraloperator==1.0.2"], "runtimes": [MSST]}


# --- HyperACE / FNO / code artifacts ------------------------------------------------------------

OWN_CODE_IN_LEGACY = {"unwa-hyperace", "unwa-hyperace-v2-inst", "unwa-hyperace-v2-voc", "unwa-inst-fno"}


@pytest.mark.parametrize("mid, code", [
    ("unwa-hyperace", "bs_roformer_hyperace.py"),
    ("unwa-hyperace-v2-inst", "bs_roformer_hyperace_v2.py"),
    ("unwa-hyperace-v2-voc", "bs_roformer_hyperace_v2.py"),
    ("unwa-inst-fno", "bs_roformer_fno.py"),
    ("bs-roformer-inst-exp-value-residual", "bs_roformer_value_residual.py"),
])
def test_custom_code_models_run_their_code_artifact_on_msst(models, mid, code):
    """msst runs them with their own code file (scoped to msst); those stemsep-legacy implements itself (HyperACE,
    FNO: issue 18) prefer it, since it needs no code from the user."""
    m = models[mid]
    if mid in OWN_CODE_IN_LEGACY:
        assert m["runtime"]["allowed"] == [LEGACY, MSST] and m["runtime"]["preferred"] == LEGACY
    else:
        assert m["runtime"]["allowed"] == [MSST] and m["runtime"]["preferred"] == MSST
        assert "stemsep-legacy:" in m["runtime"]["blocking_reason"]
    assert "audio-separator:" in m["runtime"]["blocking_reason"]
    codes = [a for a in m["artifacts"]["additional"] if a["kind"] == "code"]
    assert [a["filename"] for a in codes] == [code] and codes[0]["runtimes"] == [MSST]
    assert codes[0]["model_type"] == m["runtime"]["model_type"] and codes[0]["class_name"]
    steps = m["requirements"]["manual_steps"]
    assert steps and all(isinstance(s, dict) and s["automated_by"] == code for s in steps)
    assert m["compatibility"]["uvr_compatible"] is False


def test_hyperace_v2_models_share_one_code_file(models):
    inst = models["unwa-hyperace-v2-inst"]["artifacts"]["additional"][0]
    voc = models["unwa-hyperace-v2-voc"]["artifacts"]["additional"][0]
    assert inst == voc and inst["url"].endswith("/bs_roformer.py")
    assert "incompatible with UVR" in models["unwa-hyperace-v2-inst"]["runtime"]["blocking_reason"]


def test_guide_named_msst_only_models(models):
    for mid in ("lew-apollo-vocal", "lew-apollo-universal"):
        m = models[mid]
        assert m["runtime"]["allowed"] == [MSST], mid
        assert "audio-separator:" in m["runtime"]["blocking_reason"], mid


def test_mono_roformer_runs_on_stemsep_legacy_only(models):
    """The guide names anvuew's room dereverb MSST-only, but msst 0.1.0 feeds every model two channels: a mono
    BS-Roformer fails there (registry/capabilities.py); stemsep-legacy runs it, channel by channel."""
    room = models["anvuew-dereverb-room"]
    assert room["capabilities"]["supports_mono"] is True and room["capabilities"]["supports_stereo"] is False
    assert room["runtime"]["allowed"] == [LEGACY] and room["runtime"]["preferred"] == LEGACY
    assert "msst:" in room["runtime"]["blocking_reason"] and "audio-separator:" in room["runtime"]["blocking_reason"]


# --- phase fix ---------------------------------------------------------------------------------

def test_phase_fix_references_and_parameters(models):
    refs = {mid for mid, m in models.items() if m["phase_fix"]["is_valid_reference"]}
    assert {"bs-roformer-viperx-1296", "bs-roformer-viperx-1297", "becruily-vocal", "mel-band-roformer-kim",
            "unwa-ft3-preview", "unwa-big-beta-5e"} <= refs
    assert len(refs) >= 6
    for mid, m in models.items():
        is_ref = m["phase_fix"]["is_valid_reference"]
        assert is_ref == ("phase_fix_reference" in m["capabilities"]["roles"]), mid
        if is_ref:
            p = m["phase_fix"]["recommended_params"]
            assert 0 < p["lowHz"] <= p["highHz"] <= 24000, mid
            assert 0 <= p["highFreqWeight"] <= 4, mid
            assert m["phase_fix"]["recommended_usage"], mid
    kim = models["mel-band-roformer-kim"]["phase_fix"]["recommended_params"]
    assert (kim["lowHz"], kim["highHz"]) == (420, 4200)
    assert models["becruily-vocal"]["phase_fix"]["recommended_params"]["highFreqWeight"] == 2
    viperx = models["bs-roformer-viperx-1297"]["phase_fix"]["recommended_params"]
    assert (viperx["lowHz"], viperx["highHz"]) == (500, 5000)


# --- capabilities ------------------------------------------------------------------------------

def test_roles_and_stems(models):
    stem = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
    for mid, m in models.items():
        caps = m["capabilities"]
        assert caps["roles"] and set(caps["roles"]) <= set(ROLES), mid
        assert all(stem.match(s) for s in caps["stems"]), mid
        if not m["runtime"].get("catalog_only"):
            assert caps["stems"], mid
    assert models["htdemucs-6s"]["capabilities"]["stems"] == ["vocals", "drums", "bass", "guitar", "piano", "other"]
    assert models["bs-roformer-viperx-1297"]["capabilities"]["stems"][0] == "vocals"


# --- settings semantics ------------------------------------------------------------------------

def test_overlap_meaning_declared_and_values_fit_it(models):
    for mid, m in models.items():
        sem = m["settings_semantics"]["overlap"]
        assert sem["meaning"] in OVERLAP_MEANINGS, mid
        assert set(sem.get("meaning_by_runtime") or {}) == set(m["runtime"]["allowed"]), mid
        assert set((sem.get("meaning_by_runtime") or {}).values()) <= set(OVERLAP_MEANINGS), mid
        overlap = (m.get("recommended_settings") or {}).get("overlap")
        if sem["meaning"] == "divisor" and overlap is not None:
            assert isinstance(overlap, int) and overlap >= 1, mid
        if sem["meaning"] == "ratio" and overlap is not None:
            assert 0 <= overlap < 1, mid
        if sem["meaning"] == "none":
            assert overlap is None, mid


def test_guide_recommended_values(models):
    rec = lambda mid: models[mid]["recommended_settings"]  # noqa: E731
    assert rec("bs-roformer-viperx-1297")["overlap"] == 4
    assert rec("unwa-hyperace-v2-inst")["overlap"] == 2
    assert rec("mdx23c-instvoc-hq")["overlap"] == 8
    for demucs in ("htdemucs", "htdemucs-6s", "htdemucs-ft"):
        assert rec(demucs)["overlap"] == 0.5 and rec(demucs)["shifts"] == 2, demucs
        assert models[demucs]["settings_semantics"]["overlap"]["meaning"] == "ratio"
    assert models["htdemucs"]["settings_semantics"]["overlap"]["meaning_by_runtime"] == {AS: "ratio", MSST: "divisor"}
    assert models["vr-arch-5-hp"]["settings_semantics"]["overlap"]["meaning"] == "none"


# --- artifacts ---------------------------------------------------------------------------------

def test_artifact_filenames_bare_and_hashes_wellformed(models):
    for mid, m in models.items():
        for slot, art in artifacts_of(m):
            name = art["filename"]
            assert name and "/" not in name and "\\" not in name and ".." not in name, f"{mid}.{slot}"
            assert art.get("url", "").startswith("https://") or art.get("url") is None, f"{mid}.{slot}"
            if art.get("sha256") is not None:
                assert SHA256.match(art["sha256"]), f"{mid}.{slot}"
            if art.get("unsafe_pickle"):
                assert art["kind"] == "checkpoint", f"{mid}.{slot}"


def test_no_two_models_share_a_primary_filename(models):
    owners: dict[str, list[str]] = {}
    for mid, m in models.items():
        primary = (m.get("artifacts") or {}).get("primary")
        if primary:
            owners.setdefault(primary["filename"], []).append(mid)
    assert {n: ids for n, ids in owners.items() if len(ids) > 1} == {}
    dup = models["viperx-karaoke-1297"]["runtime"]
    assert dup["duplicate_of"] == "mel-band-karaoke-aufr33" and "mel-band-karaoke-aufr33" in dup["blocking_reason"]


def test_legacy_filename_errors_are_fixed_from_the_url(models):
    large = models["amane-4-stems-large"]["artifacts"]["primary"]
    assert large["filename"] == "mel_band_roformer_4stems_large_ver1.ckpt" == large["url"].rsplit("/", 1)[1]
    for mid, m in models.items():
        for slot, art in artifacts_of(m):
            url = art.get("url")
            # Code files are all called bs_roformer.py upstream: they get a name per model type instead.
            if url and art["kind"] != "code" and "drive.usercontent.google.com" not in url:
                assert url.rsplit("/", 1)[1].split("?")[0] == art["filename"], f"{mid}.{slot}"
    assert any(e["kind"] == "legacy" and "derived from the URL" in e["note"]
               for e in models["amane-4-stems-large"]["evidence"])


def test_known_checksums_kept(models):
    assert models["bs-roformer-viperx-1297"]["artifacts"]["config"]["sha256"] == \
        "42e5635ceab7287b83d9591c9880966f0b61cff26a0a40a29d236bacb32e5f2c"
    assert sum(1 for m in models.values() for _s, a in artifacts_of(m) if a.get("sha256")) >= 10


# --- the built-in default ----------------------------------------------------------------------

def test_builtin_center_split(models):
    m = models["builtin-center-split"]
    assert m["architecture"] == "DSP"
    assert m["runtime"]["allowed"] == [LEGACY] and m["runtime"]["preferred"] == LEGACY
    assert m["runtime"]["model_type"] == "dsp_center_split"
    assert "built-in DSP, no checkpoint" in m["runtime"]["blocking_reason"]
    assert m["requirements"]["torch"]["required"] is False
    assert not (m.get("artifacts") or {}).get("primary")
    caps = m["capabilities"]
    assert caps["stems"] == ["vocals", "instrumental"] and caps["roles"] == ["separation"]
    assert caps["supports_mono"] is True and caps["supports_stereo"] is True
    assert m["settings_semantics"]["overlap"]["meaning"] == "none"
    desc = m["description"].lower()
    for words in ("centre-panned", "inter-channel similarity", "mono", "silence", "no torch"):
        assert words in desc, words


# --- evidence ----------------------------------------------------------------------------------

def test_every_model_records_evidence(models):
    for mid, m in models.items():
        assert m.get("evidence"), mid
        for item in m["evidence"]:
            assert item["kind"] in EVIDENCE_KINDS and item["source"].strip() and item["fields"], mid
            if item["kind"] == "guide":
                assert GUIDE.match(item["source"]), f"{mid}: {item['source']}"


def _norm(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip().lower()


def test_guide_quotes_are_in_the_cited_lines(models, legacy_registry_path):
    guide_path = legacy_registry_path.parent.parent / "deton24_guide.txt"
    if not guide_path.is_file():
        pytest.skip("deton24_guide.txt not available")
    lines = guide_path.read_text(encoding="utf-8").split("\n")
    checked = 0
    for mid, m in models.items():
        for item in m["evidence"]:
            match = GUIDE.match(item["source"])
            if match and item.get("quote"):
                first, last = int(match.group(1)), int(match.group(2) or match.group(1))
                assert _norm(item["quote"]) in _norm(" ".join(lines[first - 1:last])), \
                    f"{mid}: {item['quote']!r} not in {item['source']}"
                checked += 1
    assert checked >= 150


def test_config_quotes_are_in_the_vendored_configs(models, msst_configs_dir):
    checked = 0
    for mid, m in models.items():
        for item in m["evidence"]:
            if item["kind"] == "config" and item.get("quote"):
                name = item["source"].split("/", 1)[1]
                assert _norm(item["quote"]) in _norm((msst_configs_dir / name).read_text(encoding="utf-8")), mid
                checked += 1
    assert checked >= 5
