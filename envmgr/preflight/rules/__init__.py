"""Preflight's rules (seed §4.1): pure functions from gathered facts to findings, and the decision.

No I/O, and nothing of envmgr outside this package: envmgr/preflight/run.py gathers the facts (audio headers, env state,
artifact state, confirmations, the machine's GPUs) and calls these. Every finding carries a stable
code from CODES; docs/preflight.md lists them all (a test keeps the two in step).

Codes starting with E_ are errors, W_ warnings. A *fatal* error means the job cannot run at all (no
such file, no such model, a file nobody can fetch, untrusted code): it stops the job in every
enforcement mode. The other errors are policy: `strict` blocks on them, `soft` blocks unless
`--dev-override`, `report` only reports them. An error about one input blocks that input only; the
job proceeds with the others (a batch goes on past a bad file), unless no input is left.
"""

from __future__ import annotations

from envmgr.preflight.rules.codes import MODES, Code, CODES, Finding, from_error
from envmgr.preflight.rules.inputs import (
    FFMPEG_FORMATS, UPMIXES_MONO, DOWNMIXES_TO_MONO, AudioFacts, check_input, check_channels,
    model_sample_rate, check_sample_rate, check_memory,
)
from envmgr.preflight.rules.runtime import RuntimeResolution, route, resolve_job_settings
from envmgr.preflight.rules.artifacts import ArtifactFacts, check_artifacts
from envmgr.preflight.rules.direct_requirements import DirectRequirementFacts, check_direct_requirements
from envmgr.preflight.rules.env import PipFacts, EnvFacts, check_env, check_system_libraries, torch_variant, torchvision_fits
from envmgr.preflight.rules.model_config import ConfigFacts, check_config
from envmgr.preflight.rules.manual_steps import step_text, check_manual_steps
from envmgr.preflight.rules.phase_fix import PHASE_FIX_PARAMS, check_phase_fix
from envmgr.preflight.rules.decision import Decision, decide

__all__ = [
    'MODES', 'Code', 'CODES', 'Finding', 'from_error', 'FFMPEG_FORMATS', 'UPMIXES_MONO', 'DOWNMIXES_TO_MONO',
    'AudioFacts', 'check_input', 'check_channels', 'model_sample_rate', 'check_sample_rate', 'check_memory',
    'RuntimeResolution', 'route', 'resolve_job_settings', 'ArtifactFacts', 'check_artifacts',
    'DirectRequirementFacts', 'check_direct_requirements',
    'PipFacts', 'EnvFacts', 'check_env', 'check_system_libraries', 'torch_variant', 'torchvision_fits', 'ConfigFacts', 'check_config', 'step_text', 'check_manual_steps',
    'PHASE_FIX_PARAMS', 'check_phase_fix', 'Decision', 'decide',
]
