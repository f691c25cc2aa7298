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
from registry.settings import (SETTINGS_TABLE, Geometry, OverlapLostError, SettingsError, exact_pin_version,
                               resolve_settings, settings_rule, translate_overlap)
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
    (4.0, "divisor", "divisor", {}, 4),  # an int: runtimes refuse a float divisor
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


def _with(index: int, **recommended) -> ModelEntry:
    raw = valid_doc()["models"][index]
    raw.setdefault("recommended_settings", {}).update(recommended)
    return ModelEntry.model_validate(raw)


@pytest.mark.parametrize("runtime,param", [("audio-separator", "mdxc_params"), ("msst", "inference"),
                                           ("stemsep-legacy", "inference")])
def test_a_divisor_written_as_a_float_reaches_the_runtime_as_an_int(runtime, param):
    """`range(0, n, chunk // 4.0)` and msst's Integral check fail on 4.0 (exit 11 in all three runtimes)."""
    key = "overlap" if param == "mdxc_params" else "num_overlap"
    for res in (resolve_settings(_with(VIPERX, overlap=4.0), runtime),
                resolve_settings(fixture_entry(VIPERX), runtime, user={"overlap": 4.0})):
        native = res.native()[param][key]
        assert native == 4 and type(native) is int
        assert "integer 4" in res.settings["overlap"].note and res.settings["overlap"].source_value == 4.0


def test_a_whole_number_for_an_integer_parameter_becomes_an_int():
    """audio-separator's Demucs takes int(segment_size): 352800 samples are 8.0 s, passed as 8 with a note."""
    res = resolve_settings(_with(DEMUCS, segment_size=352800), "audio-separator")
    segment = res.native()["demucs_params"]["segment_size"]
    assert segment == 8 and type(segment) is int and "integer 8" in res.settings["segment_size"].note
    cut = _problem(resolve_settings(_with(DEMUCS, segment_size=330750), "audio-separator"), "segment_size")
    assert "not an integer" in cut.why and "7 or 8" in cut.hint  # 7.5 s would be cut to 7 silently


def test_a_ratio_that_rounds_to_no_overlap_is_refused_with_the_nearest_values():
    demucs = _with(DEMUCS, overlap=0.25)  # hop 0.75 of the chunk: the nearest divisor, 1, is no overlap
    assert resolve_settings(demucs, "audio-separator").native()["demucs_params"]["overlap"] == 0.25  # its own meaning
    with pytest.raises(OverlapLostError, match="would become divisor 1 on msst") as err:
        resolve_settings(demucs, "msst")
    assert "at least 0.3334" in err.value.hint and "--overlap 2" in err.value.hint and "ratio 0" in err.value.hint
    assert "recommended_settings.overlap" in err.value.hint
    viperx = fixture_entry(VIPERX)
    with pytest.raises(OverlapLostError, match="0.3333"):
        resolve_settings(viperx, "msst", user={"overlap": 0.3333}, user_meanings={"overlap": "ratio"})
    assert resolve_settings(viperx, "msst", user={"overlap": 0.3334},
                            user_meanings={"overlap": "ratio"}).settings["overlap"].value == 2
    # no overlap asked for explicitly keeps its meaning: ratio 0, a hop of the whole chunk in seconds
    assert resolve_settings(viperx, "msst", user={"overlap": 0},
                            user_meanings={"overlap": "ratio"}).settings["overlap"].value == 1
    assert resolve_settings(viperx, "msst", user={"overlap": 8.0},
                            user_meanings={"overlap": "seconds"}).settings["overlap"].value == 1


def _problem(res, name):
    (problem,) = [p for p in res.problems if p.name == name]
    return problem


def test_values_outside_what_the_runtime_accepts_are_problems_never_clamped():
    viperx = fixture_entry(VIPERX)  # msst chunk: 352800 samples
    res = resolve_settings(viperx, "msst", user={"overlap": 352801})
    assert res.native()["inference"]["num_overlap"] == 352801  # as given: preflight refuses, nothing is clamped
    problem = _problem(res, "overlap")
    assert "hop of 0 samples" in problem.why and "nearest valid divisor: 352800" in problem.hint
    assert resolve_settings(viperx, "msst", user={"overlap": 352800}).problems == ()
    frames = _problem(resolve_settings(viperx, "audio-separator", user={"segment_size": 1}), "segment_size")
    assert "integer >= 2" in frames.why and "nearest valid frames: 2" in frames.hint
    assert _problem(resolve_settings(viperx, "msst", user={"batch_size": 0}), "batch_size").hint.startswith(
        "the nearest valid value: 1")
    mdx = resolve_settings(fixture_entry(MDXNET), "audio-separator", user={"overlap": 0.999999},
                           geometry=Geometry(hop_length=1024))  # chunk 1024 * 255: int(0.000001 * chunk) = 0
    assert "nearest valid ratio: 0.9999" in _problem(mdx, "overlap").hint
    registry = _problem(resolve_settings(_with(MDXNET, segment_size=1), "audio-separator"), "segment_size")
    assert registry.provenance == "registry" and "recommended_settings.segment_size" in registry.hint


def test_every_native_parameter_has_its_accepted_range():
    """The ranges live next to the meanings (one place): a row that passes a parameter says what it accepts."""
    for row in SETTINGS_TABLE:
        passed = {name for name in row.params if name != "tta"}
        passed |= {"overlap"} if row.overlap_param else set()
        passed |= {"segment_size"} if row.segment_param else set()
        assert passed <= set(row.accepts), (row.runtime, sorted(row.families))
        if row.overlap_meaning == "divisor":
            assert row.accepts["overlap"].integer and row.accepts["overlap"].hop


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
    # the accepted range (settings_rule(...).accepts): an Integral num_overlap >= 1, at most chunk_size
    assert "not isinstance(num_overlap, Integral)" in source and "num_overlap < 1" in source
    assert "if num_overlap > chunk_size:" in source


def test_audio_separator_divisor_range_matches_its_code(library_sources):
    source = (library_sources[("audio-separator", "0.47.1")] / MDXC).read_text(encoding="utf-8")
    assert "if overlap <= 0:" in source and "step = chunk_size // self.overlap" in source
    assert "if step <= 0:" in source  # a divisor above the chunk is refused; a float one fails in range()
    old = (library_sources[("audio-separator", "0.46.0")] / MDXC).read_text(encoding="utf-8")
    assert "step = chunk_size if desired_step <= 0" in old  # a seconds hop under one sample: no overlap
