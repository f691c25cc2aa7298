"""Which UVR model-data parameters an MDX-Net or VR model needs on the runtimes that look them up by hash.

audio-separator (like UVR) has no config file for these models: it hashes the model file and looks the hash
up in UVR's model data. Without the entry's `uvr_model_data` the load fails after preflight said yes, so the
validator (registry/rules/uvr_params.py) and preflight both ask this module. Works on typed and frozen entries.
"""

from __future__ import annotations

from typing import Any

# Keys audio-separator 0.47 reads without a default (mdx_separator.py: model_data["compensate"] ...;
# vr_separator.py: model_data["vr_model_param"]); primary_stem names the stems it writes.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "MDX-Net": ("primary_stem", "compensate", "mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set"),
    "VR": ("primary_stem", "vr_model_param"),
}
RUNTIMES_READING_UVR_DATA = ("audio-separator",)


def missing_uvr_params(entry: Any, runtime: str) -> tuple[str, ...]:
    """The `uvr_model_data` keys `entry` lacks to run on `runtime` (empty: nothing missing or not needed)."""
    required = REQUIRED_KEYS.get(str(getattr(entry, "architecture", "") or ""))
    if not required or runtime not in RUNTIMES_READING_UVR_DATA:
        return ()
    data = getattr(entry, "uvr_model_data", None)
    missing = [key for key in required if data is None or getattr(data, key, None) in (None, "")]
    if data is not None and (getattr(data, "nout", None) is None) != (getattr(data, "nout_lstm", None) is None):
        missing.append("nout_lstm" if getattr(data, "nout_lstm", None) is None else "nout")  # read as a pair
    return tuple(missing)
