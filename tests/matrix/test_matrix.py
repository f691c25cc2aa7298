"""The acceptance matrix of issue 14: every registry model on every runtime in its `runtime.allowed`, with a tiny
checkpoint of the model's real architecture, run end to end by `stemsep separate`. A pair either runs (stems finite,
of the entry's count and names, as long as the input) or preflight refuses it with a code; nothing fails after a
yes. Pairs that fail today for a reason outside the matrix are listed in KNOWN with the precise cause (strict
xfail: they must really fail, so a fix shows up). The table of outcomes is printed at the end of the session.

Test ids: `runtime:model[source]`, source = real-config (the entry's own config file, from the reference configs),
published-config (the architecture's published config with the entry's stems and stereo/mono), uvr-params (MDX-Net
and VR: the registry's UVR parameters are the structure) or builtin (DSP). Models with their own code add
+stand-in-code: the published code file cannot be had here, so a stand-in class (the runtime tests') is served as it;
the registry pins none of these files, so the matrix trusts each explicitly (`stemsep models trust`) after
preflight refused it without that consent. On stemsep-legacy, which implements these variants itself (HyperACE,
FNO), they are +own-code instead: the checkpoint has the variant's real key layout, made by our own model code in
stemsep-legacy's env (tests/matrix/make_models.py own-roformer), and the code file, scoped to msst, is never fetched.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.matrix.cases import case_id, matrix_models
from tests.matrix.conftest import Matrix, record

pytestmark = [pytest.mark.envs, pytest.mark.slow]

# (model, runtime) -> why it fails today (outside the matrix's own tooling).
# None today: audio-separator's multi-band VR models, which load the system's libsamplerate, are refused by
# preflight where it is missing (E_SYSTEM_LIBRARY_MISSING) instead of failing after a yes.
KNOWN: dict[tuple[str, str], str] = {}
# Families whose tiny files the matrix cannot make yet: their pairs are expected failures named so, never skips.
NO_MAKER_YET: set[str] = set()
# audio-separator 0.47.1's VR path drops the last partial STFT hop: stems up to one hop short (docs/runtimes.md).
VR_SHORT_BY = 1023


def cases() -> list[object]:
    out = []
    for model in matrix_models():
        for runtime in model.runtimes:
            marks = []
            if (model.id, runtime) in KNOWN:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[(model.id, runtime)]))
            elif model.family in NO_MAKER_YET:
                marks.append(pytest.mark.xfail(strict=True, reason=f"no tiny-model maker for the {model.family} "
                                               "family in the matrix yet (not run)"))
            out.append(pytest.param(model.id, runtime, id=case_id(model, runtime), marks=marks))
    return out


@pytest.mark.parametrize("model_id, runtime", cases())
def test_pair_runs_or_is_refused_by_preflight(matrix: Matrix, model_id: str, runtime: str) -> None:
    outcome = matrix.outcome(model_id, runtime)
    known = KNOWN.get((model_id, runtime)) or (outcome.detail if outcome.status == "not-built" else None)
    record(matrix, model_id, runtime, outcome, known)
    if model_id in matrix.without_consent:  # unpinned code: never run before the matrix consented to it
        assert "E_CODE_UNTRUSTED" in matrix.without_consent[model_id], matrix.without_consent[model_id]
    if outcome.status == "refused":  # preflight said no, with its code: the promise holds
        return
    try:
        assert outcome.status == "ok", f"{outcome.status} ({outcome.code}): {outcome.detail}"
        check_stems(matrix, model_id, outcome.stems)
    except AssertionError as err:
        if outcome.status == "ok":
            outcome.status, outcome.code, outcome.detail = "failed", "stems", str(err)
        raise


def check_stems(matrix: Matrix, model_id: str, stems: list[dict[str, object]]) -> None:
    model = matrix.models[model_id]
    names = [str(s["name"]) for s in stems]
    assert sorted(names) == sorted(model.stems), f"stems {names}, the entry declares {list(model.stems)}"
    frames = sf.info(str(matrix.clip)).frames
    shortest = frames - VR_SHORT_BY if model.family == "vr" else frames
    for stem in stems:
        audio, _rate = sf.read(str(stem["path"]), dtype="float32", always_2d=True)
        assert shortest <= audio.shape[0] <= frames, f"{stem['name']}: {audio.shape[0]} frames, input {frames}"
        assert np.isfinite(audio).all(), f"{stem['name']}: non-finite samples"
