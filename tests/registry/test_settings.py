"""Settings semantics: the docs/DESIGN.md §4 table keyed by pinned library version, translation with explicit
rounding, provenance, and the table checked against the libraries' own code."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from registry.model import ModelEntry
from registry.settings import (Geometry, SettingsError, exact_pin_version, resolve_settings, settings_rule,
                               translate_overlap)
from tests.registry.rule_cases import DEMUCS, HYPERACE, MDXNET, VIPERX, VR, valid_doc


def fixture_entry(index: int, **runtime_pins) -> ModelEntry:
    raw = valid_doc()["models"][index]
    raw.setdefault("requirements", {}).setdefault("runtime_pins", {}).update(
        {k.replace("_", "-"): v for k, v in runtime_pins.items()})
    return ModelEntry.model_validate(raw)


# runtime, family, library version -> native overlap meaning and parameter (docs/DESIGN.md §4, measured)
TABLE = [
    ("audio-separator", "roformer", "0.44.0", "seconds", "mdxc_params.overlap"),
    ("audio-separator", "roformer", "0.46.0", "seconds", "mdxc_params.overlap"),
    ("audio-separator", "roformer", "0.47.0", "divisor", "mdxc_params.overlap"),
    ("audio-separator", "roformer", "0.47.1", "divisor", "mdxc_params.overlap"),
    ("audio-separator", "mdx23c", "0.44.0", "divisor", "mdxc_params.overlap"),
    ("audio-separator", "mdx23c", "0.47.1", "divisor", "mdxc_params.overlap"),
    ("audio-separator", "mdx_net", "0.47.1", "ratio", "mdx_params.overlap"),
    ("audio-separator", "demucs", "0.47.1", "ratio", "demucs_params.overlap"),
    ("audio-separator", "vr", "0.47.1", "none", None),
    ("msst", "roformer", "0.1.0", "divisor", "inference.num_overlap"),
    ("msst", "mdx23c", "0.1.0", "divisor", "inference.num_overlap"),
    ("msst", "scnet", "0.1.0", "divisor", "inference.num_overlap"),
    ("msst", "demucs", "0.1.0", "divisor", "inference.num_overlap"),
    ("stemsep-legacy", "roformer", None, "divisor", "inference.num_overlap"),
    ("stemsep-legacy", "dsp", None, "none", None),
]


@pytest.mark.parametrize("runtime,family,version,meaning,param", TABLE)
def test_settings_table(runtime, family, version, meaning, param):
    row = settings_rule(runtime, family, version)
    assert row is not None and (row.overlap_meaning, row.overlap_param) == (meaning, param)


@pytest.mark.parametrize("runtime,family,version", [
    ("audio-separator", "scnet", "0.47.1"), ("msst", "vr", "0.1.0"), ("msst", "mdx_net", "0.1.0"),
    ("stemsep-legacy", "demucs", None)])
def test_no_row_where_the_runtime_cannot_run_the_family(runtime, family, version):
    assert settings_rule(runtime, family, version) is None


@pytest.mark.parametrize("value,source,target,kwargs,expected", [
    (4, "divisor", "ratio", {}, 0.75),
    (0.75, "ratio", "divisor", {}, 4),
    (0.5, "ratio", "divisor", {}, 2),
    (0.6, "ratio", "divisor", {}, 3),  # 1 / 0.4 = 2.5 -> 3: halves round up
    (0.99, "ratio", "divisor", {}, 100),
    (8, "divisor", "ratio", {}, 0.875),
    (3, "divisor", "ratio", {}, 0.6667),  # 4 decimals
    (4, "divisor", "seconds", {"chunk": 352800, "sample_rate": 44100}, 2.0),
    (2.0, "seconds", "divisor", {"chunk": 352800, "sample_rate": 44100}, 4),
    (10.0, "seconds", "divisor", {"chunk": 352800, "sample_rate": 44100}, 1),  # hop clamped to the chunk
    (0.25, "ratio", "seconds", {"chunk": 441000, "sample_rate": 44100}, 7.5),
    (4, "divisor", "divisor", {}, 4),
])
def test_translate_overlap(value, source, target, kwargs, expected):
    native, note = translate_overlap(value, source, target, **kwargs)
    assert native == expected and type(native) is type(expected), note


def test_translation_says_when_it_rounds():
    _, note = translate_overlap(0.6, "ratio", "divisor")
    assert "rounded" in note
    _, note = translate_overlap(0.75, "ratio", "divisor")
    assert "rounded" not in note


def test_seconds_need_the_chunk():
    native, note = translate_overlap(4, "divisor", "seconds")
    assert native is None and "chunk size" in note


def test_audio_separator_meaning_change_is_keyed_by_the_pinned_version():
    """Same registry value (divisor 4, 8 s chunks) -> 2.0 seconds for 0.44, divisor 4 for 0.47.1."""
    old = resolve_settings(fixture_entry(VIPERX, audio_separator="audio-separator==0.44.0"), "audio-separator")
    assert old.library_version == "0.44.0"
    assert (old.settings["overlap"].value, old.settings["overlap"].meaning) == (2.0, "seconds")
    assert old.native()["mdxc_params"]["overlap"] == 2.0
    new = resolve_settings(fixture_entry(VIPERX), "audio-separator")
    assert new.library_version == "0.47.1"
    assert (new.settings["overlap"].value, new.settings["overlap"].meaning) == (4, "divisor")
    assert new.settings["overlap"].provenance == "registry"


def test_unpinned_runtime_uses_the_default_version():
    raw = valid_doc()["models"][VIPERX]
    raw["requirements"]["runtime_pins"] = {}
    assert resolve_settings(ModelEntry.model_validate(raw), "audio-separator").library_version == "0.47.1"
    assert resolve_settings(ModelEntry.model_validate(raw), "msst").library_version == "0.1.0"


def test_inexact_pin_outside_the_default_is_refused():
    entry = fixture_entry(VIPERX, audio_separator="audio-separator<0.45")
    with pytest.raises(SettingsError, match="cannot tell"):
        resolve_settings(entry, "audio-separator")
    assert exact_pin_version("msst[bs-roformer]==0.1.0") == "0.1.0"
    assert exact_pin_version("msst>=0.1") is None and exact_pin_version("msst==0.*") is None


def test_demucs_ratio_becomes_a_divisor_in_msst():
    demucs = fixture_entry(DEMUCS)
    as_ = resolve_settings(demucs, "audio-separator")
    assert as_.native() == {"demucs_params": {"overlap": 0.5, "shifts": 2}}
    msst = resolve_settings(demucs, "msst")
    assert msst.settings["overlap"].value == 2 and msst.settings["overlap"].source_meaning == "ratio"
    assert msst.native() == {"inference": {"num_overlap": 2}}  # shifts: msst has none, unused
    assert msst.settings["shifts"].value is None and "unused" in msst.settings["shifts"].note


def test_msst_job_settings_for_a_roformer():
    res = resolve_settings(fixture_entry(HYPERACE), "msst")
    assert res.native() == {"inference": {"num_overlap": 2, "chunk_size": 352800}}
    assert {k: v.provenance for k, v in res.settings.items() if v.value is not None} == {
        "overlap": "registry", "segment_size": "registry"}


def test_user_values_override_in_the_native_meaning_unless_named():
    entry = fixture_entry(VIPERX)
    res = resolve_settings(entry, "msst", user={"overlap": 8, "batch_size": 2})
    assert res.settings["overlap"].value == 8 and res.settings["overlap"].provenance == "user"
    assert res.native()["inference"] == {"num_overlap": 8, "chunk_size": 352800, "batch_size": 2}
    named = resolve_settings(entry, "msst", user={"overlap": 0.5}, user_meanings={"overlap": "ratio"})
    assert named.settings["overlap"].value == 2
    with pytest.raises(SettingsError, match="not a valid divisor"):
        resolve_settings(entry, "msst", user={"overlap": 0.5})


def test_runtime_default_when_nothing_is_recommended():
    raw = valid_doc()["models"][VIPERX]
    raw["recommended_settings"] = {}
    res = resolve_settings(ModelEntry.model_validate(raw), "audio-separator")
    overlap = res.settings["overlap"]
    assert overlap.provenance == "runtime_default" and overlap.value is None
    assert "num_overlap, else 8" in overlap.note
    assert res.native() == {}  # nothing passed: the runtime applies its own default


def test_audio_separator_segment_in_frames_needs_the_stft_hop():
    entry = fixture_entry(VIPERX)  # segment_size 352800 samples
    without = resolve_settings(entry, "audio-separator")
    assert without.settings["segment_size"].value is None and "hop length" in without.settings["segment_size"].note
    with_geo = resolve_settings(entry, "audio-separator", geometry=Geometry(sample_rate=44100, hop_length=441))
    assert with_geo.settings["segment_size"].value == 801  # 352800 / 441 + 1 = dim_t
    assert with_geo.native()["mdxc_params"] == {"overlap": 4, "segment_size": 801, "batch_size": 1,
                                                "override_model_segment_size": True}


def test_mdx_net_frames_and_ratio_pass_as_is():
    res = resolve_settings(fixture_entry(MDXNET), "audio-separator")
    assert res.native() == {"mdx_params": {"overlap": 0.75, "segment_size": 256}}


def test_vr_has_no_overlap():
    res = resolve_settings(fixture_entry(VR), "audio-separator")
    assert res.settings["overlap"].param is None and res.native() == {}


def test_runtime_without_semantics_for_the_model_is_refused():
    with pytest.raises(SettingsError, match="no settings semantics"):
        resolve_settings(fixture_entry(VR), "msst")


def test_default_versions_match_the_env_pins():
    """registry cannot import envmgr; this keeps the two statements of the default pins in step."""
    from envmgr.envs.runtime_defs import RUNTIMES
    from registry.settings import RUNTIME_DEFAULT_VERSIONS

    for runtime, version in RUNTIME_DEFAULT_VERSIONS.items():
        pin = RUNTIMES[runtime].pin
        assert (exact_pin_version(pin) if pin else None) == version, runtime


# ---- the table against the libraries' own code -------------------------------------------------

WHEELS = {"audio-separator": ["0.44.0", "0.46.0", "0.47.0", "0.47.1"], "msst": ["0.1.0"]}
MDXC = "audio_separator/separator/architectures/mdxc_separator.py"


@pytest.fixture(scope="session")
def library_sources(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The runtime libraries' wheels from the package index (pip download --no-deps), unpacked."""
    root = tmp_path_factory.mktemp("wheels")
    out = {}
    for name, versions in WHEELS.items():
        for version in versions:
            dest = root / f"{name}-{version}"
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                   "-q", "-d", str(dest), f"{name}=={version}"], capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode != 0:
                pytest.skip(f"cannot download {name}=={version} from the package index: {proc.stderr[-300:]}")
            wheel = next(dest.glob("*.whl"))
            zipfile.ZipFile(wheel).extractall(dest / "src")
            out[(name, version)] = dest / "src"
    return out


def _roformer_branch(source: str) -> str:
    """The Roformer branch of MDXC demix: from `if self.is_roformer:` in demix to the MDX23C hop formula."""
    demix = source[source.index("def demix"):]
    start = demix.index("if self.is_roformer")
    return demix[start:demix.index("hop_size = chunk_size // self.overlap", start)]


STEP_SIGNATURES = {
    "seconds": re.compile(r"int\(self\.overlap \* self\.model_data_cfgdict\.audio\.sample_rate\)"),
    "divisor": re.compile(r"step = chunk_size // self\.overlap"),
}


@pytest.mark.parametrize("version", WHEELS["audio-separator"])
def test_audio_separator_roformer_overlap_meaning_matches_its_code(library_sources, version):
    source = (library_sources[("audio-separator", version)] / MDXC).read_text(encoding="utf-8")
    branch = _roformer_branch(source)
    meaning = settings_rule("audio-separator", "roformer", version).overlap_meaning
    found = {m for m, sig in STEP_SIGNATURES.items() if sig.search(branch)}
    assert found == {meaning}, f"audio-separator {version}: code steps by {found}, table says {meaning}"
    # MDX23C (the non-Roformer MDXC path) divides in every version
    assert "hop_size = chunk_size // self.overlap" in source
    assert settings_rule("audio-separator", "mdx23c", version).overlap_meaning == "divisor"


def test_audio_separator_ratio_archs_match_their_code(library_sources):
    root = library_sources[("audio-separator", "0.47.1")] / "audio_separator/separator"
    assert "step = int((1 - overlap) * chunk_size)" in (root / "architectures/mdx_separator.py").read_text()
    assert "stride = int((1 - overlap) * segment)" in (root / "uvr_lib_v5/demucs/apply.py").read_text()
    assert "overlap" not in (root / "architectures/vr_separator.py").read_text().lower().replace("overlap_", "")
    separator = (root / "separator.py").read_text()
    for params, default in (("mdx_params", '"overlap": 0.25'), ("demucs_params", '"overlap": 0.25')):
        assert re.search(params + r"=\{[^}]*" + re.escape(default), separator), params


def test_msst_divides_chunk_size_by_num_overlap(library_sources):
    source = (library_sources[("msst", "0.1.0")] / "msst/utils/model_utils.py").read_text(encoding="utf-8")
    assert "num_overlap = config.inference.num_overlap" in source
    assert "step = chunk_size // num_overlap" in source
