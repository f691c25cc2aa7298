"""Fixtures for the serve tests: the session's DSP env (built once, shared with the worker tests)."""

from tests.worker.conftest import dsp_env, worker_code  # noqa: F401  (fixtures, registered by import)
