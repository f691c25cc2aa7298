"""What the user asked of a job besides its inputs, model and runtime: one object that `stemsep preflight`
and `stemsep separate` build the same way (envmgr/cli/job_options.py), that `PreflightRequest` carries
and `plan_separation` takes. Imports nothing heavy: the CLI builds it before planning starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class JobOptions:
    enforcement: Optional[str] = None  # strict, soft or report; None: the machine config's (default strict)
    dev_override: bool = False  # with soft enforcement: proceed despite policy errors, loudly
    confirm_manual_steps: bool = False  # the user did the model's manual steps (remembered)
    allow_unsafe_pickle: bool = False  # consent to full unpickling of the checkpoints the registry marks so
    require_hashes: bool = False  # refuse artifacts the registry gives no sha256 for
    download: bool = True  # False: artifacts must already be in the model store
    settings: Mapping[str, Any] = field(default_factory=dict)  # user overrides (native meaning): overlap...
    # a setting given in another meaning than the runtime's native one, e.g. {"overlap": "ratio"} for StemSep's
    # app (registry.settings translates it, as it does the registry's recommendations); empty from the CLI
    setting_meanings: Mapping[str, str] = field(default_factory=dict)
    env: Optional[str] = None  # an adopted env's name (envmgr/envs/adopted.py); None: the config's, else managed
