"""MDX-Net and VR models carry the parameters UVR's model data gives them (audio-separator looks them up by hash)."""

from __future__ import annotations

import re

from registry.rules.base import Hit, ModelContext, model_rule
from registry.uvr_params import REQUIRED_KEYS, missing_uvr_params

MD5 = re.compile(r"^[0-9a-f]{32}$")


@model_rule("uvr-params-present", strict_only=True,
            summary="MDX-Net and VR models allowed on audio-separator carry UVR's model-data parameters",
            hint="add uvr_model_data from UVR's model_data.json entry for the model (MDX-Net: "
                 + ", ".join(REQUIRED_KEYS["MDX-Net"]) + "; VR: " + ", ".join(REQUIRED_KEYS["VR"])
                 + ", nout/nout_lstm for VR 5.1 models), or remove audio-separator from runtime.allowed")
def uvr_params_present(entry, ctx: ModelContext):
    for runtime in entry.runtime.allowed:
        missing = missing_uvr_params(entry, runtime)
        if missing:
            yield Hit(("uvr_model_data",), f"{entry.architecture} model on {runtime} lacks UVR parameters "
                      f"{', '.join(missing)}: the runtime finds none for its file and cannot load it")


@model_rule("uvr-hash-format", summary="uvr_model_data.uvr_hash is 32 lowercase hex digits (an MD5)",
            hint="copy the key exactly as UVR's model_data.json writes it, or leave uvr_hash out")
def uvr_hash_format(entry, ctx: ModelContext):
    data = entry.uvr_model_data
    if data is not None and data.uvr_hash is not None and not MD5.match(data.uvr_hash):
        yield Hit(("uvr_model_data", "uvr_hash"), f"{data.uvr_hash!r} is not an MD5 hex digest")
