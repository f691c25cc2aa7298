"""Real managed envs built with uv: sharing by lock, health, reuse without resolving, torch from the
machine's wheel dir, broken envs detected and rebuilt, the virtualenv + pip fallback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.builder import late_packages
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_model, request_for_requirements
from envmgr.envs.lock import Lock
from envmgr.envs.store import MARKER, META, Store
from envmgr.fsutil import read_json

from .conftest import entry, light_entry

pytestmark = pytest.mark.envs


def run_in(env, code: str) -> str:
    out = subprocess.run([str(env.python), "-I", "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def manager() -> EnvManager:
    return EnvManager(load_config())


@pytest.fixture(scope="session")
def light(manager):
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    return req, manager.ensure(req)


def builds_of(manager: EnvManager, env_id: str) -> list[dict]:
    return [b for b in manager.store.builds() if b["env_id"] == env_id]


def test_light_env_is_built_healthy_and_isolated(manager, light):
    req, env = light
    assert (env.path / MARKER).is_file() and env.id.startswith("stemsep-legacy-")
    prefix = run_in(env, "import sys, numpy, soundfile; print(sys.prefix)")
    assert Path(prefix).resolve() == env.path.resolve()
    assert env.versions["numpy"] == env.lock.packages["numpy"]
    # The env does not see the host's packages (typer is installed on the host only).
    assert run_in(env, "import importlib.util; print(importlib.util.find_spec('typer'))") == "None"
    assert manager.status(req) == "ready"
    assert manager.cached_status(req) == (env.id, "ready")  # what the web page's model view reads


def test_warm_request_reuses_env_and_lock_without_resolving(manager, light):
    req, env = light
    lock_files = sorted((manager.config.cache_dir / "locks").glob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in lock_files}
    # The session's env store: other test files may have built it too, some through homes with logs of their own
    # (tests/support/cli.py home_sharing_session_envs), so the env's own marker says whether it was rebuilt.
    builds, built_at = len(builds_of(manager, env.id)), (env.path / MARKER).stat().st_mtime_ns
    again = manager.ensure(req)
    assert again.id == env.id and again.lock.resolved_at == env.lock.resolved_at
    assert {p: p.stat().st_mtime_ns for p in lock_files} == mtimes  # no lock was written again
    assert len(builds_of(manager, env.id)) == builds  # and nothing was built again
    assert (again.path / MARKER).stat().st_mtime_ns == built_at


def test_identical_requirements_share_an_env_and_a_different_pin_does_not(manager, light):
    req, env = light
    twin = request_for_model(light_entry("other-model"), "stemsep-legacy", manager.config)
    assert manager.env_id(twin) == env.id
    # A different request that resolves to the same lock still shares the env: the id hashes the lock.
    reordered = request_for_requirements(["soundfile", "numpy"], runtime="stemsep-legacy", config=manager.config)
    assert reordered.lock_inputs() != req.lock_inputs() and manager.env_id(reordered) == env.id
    six_old = request_for_model(light_entry("a", ["six==1.16.0"]), "stemsep-legacy", manager.config)
    six_new = request_for_model(light_entry("b", ["six==1.17.0"]), "stemsep-legacy", manager.config)
    ids = {env.id, manager.env_id(six_old), manager.env_id(six_new)}
    assert len(ids) == 3
    built = manager.ensure(six_old)
    assert run_in(built, "import six; print(six.__version__)") == "1.16.0"


def test_record_use_tracks_models_and_last_use(manager, light):
    _, env = light
    manager.record_use(env.id, "model-x")
    record = manager.store.record(env.id)
    assert "model-x" in record.models and record.last_used is not None


def test_torch_env_comes_from_the_configured_wheel_and_is_the_pinned_build(manager, torch_machine):
    req = request_for_model(entry(requirements={"torch": {"required": True}}), "stemsep-legacy", manager.config)
    env = manager.ensure(req)
    pinned = next(o for o in manager.config.overrides if o.startswith("torch"))
    assert env.torch["version"] == pinned.split("==")[1]
    assert env.lock.packages["torch"] == pinned.split("==")[1]
    out = run_in(env, "import torch; print(torch.__version__, torch.version.cuda)")
    assert out == f"{env.torch['version']} None"


def test_torch_env_installs_torch_last_while_the_health_import_runs(manager, torch_machine):
    req = request_for_model(entry(requirements={"torch": {"required": True}}), "stemsep-legacy", manager.config)
    env = manager.ensure(req)
    late = late_packages(env.lock)
    # torch and what only torch needs go in the second sync; what the import check needs is there before
    assert {"torch", "sympy", "mpmath", "networkx", "jinja2", "markupsafe"} <= late
    assert not late & {"numpy", "soundfile", "cffi", "pycparser", "pyyaml", "typing-extensions"}
    first = Lock(env.lock.without(late), env.lock.interpreter, "", 0).packages
    assert first == {name: v for name, v in env.lock.packages.items() if name not in late}
    meta = read_json(env.path / META)
    assert meta["health_import"].startswith("overlapped") and meta["versions"]["torch"] == env.torch["version"]


def test_a_health_import_of_a_late_package_still_gives_a_healthy_env(store_config, torch_machine):
    from dataclasses import replace

    manager = EnvManager(store_config())
    req = request_for_model(entry(requirements={"torch": {"required": True}}), "stemsep-legacy", manager.config)
    needs_late = replace(req, health_modules=("filelock", "numpy"))  # filelock: only torch requires it
    assert "filelock" in late_packages(manager.lock(needs_late))
    env = manager.ensure(needs_late)
    # Whether the early import caught filelock mid-install is a race; either way the env is checked whole.
    assert read_json(env.path / META)["health_import"] in ("after the install", "overlapped the last packages' install")
    assert run_in(env, "import filelock, torch; print('ok')") == "ok"


def test_a_failed_early_import_gives_no_findings_and_a_passed_one_gives_them_all(manager, light):
    from envmgr.envs.health import ImportCheck

    _req, env = light
    failed = ImportCheck(env.path, ("filelock", "numpy"))
    failed.start()
    assert failed.finish() is None  # the caller then probes the finished env from scratch
    passed = ImportCheck(env.path, ("soundfile", "numpy", "not_a_module_here"))
    passed.start()
    found = passed.finish()
    assert found is not None and found["dists"]["numpy"] == env.lock.packages["numpy"]
    assert list(found["errors"]) == ["not_a_module_here"]  # the other modules are still looked for


def test_a_cold_uv_cache_builds_online_after_the_offline_attempt(store_config, tmp_path):
    manager = EnvManager(store_config(uv_cache_dir=tmp_path / "cold-uv-cache"))
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    env = manager.ensure(req)  # the offline try finds nothing cached; the online sync fetches it
    assert run_in(env, "import numpy, soundfile; print(numpy.__version__)") == env.lock.packages["numpy"]


def test_changing_the_torch_override_changes_the_env_id(manager, torch_machine):
    model = entry(requirements={"torch": {"required": True}})
    base = manager.env_id(request_for_model(model, "stemsep-legacy", manager.config))
    other = EnvManager(load_config(overrides=["torch==2.5.1"]))  # resolved from PyPI's metadata only
    req = request_for_model(model, "stemsep-legacy", other.config)
    assert other.lock(req).packages["torch"] == "2.5.1"
    assert other.env_id(req) != base


def test_env_with_a_deleted_interpreter_is_detected_and_rebuilt(store_config):
    manager = EnvManager(store_config())
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    env = manager.ensure(req)
    link = env.path / "bin" / "python"
    link.unlink()
    link.symlink_to(env.path.parent / "removed-python" / "python3")  # what a deleted base interpreter leaves
    assert manager.status(req) == "broken"
    rebuilt = manager.ensure(req)
    assert rebuilt.id == env.id and run_in(rebuilt, "import numpy; print('ok')") == "ok"
    assert len(builds_of(manager, env.id)) == 2 and manager.status(req) == "ready"


def test_env_without_marker_is_never_used(store_config):
    manager = EnvManager(store_config())
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    env = manager.ensure(req)
    (env.path / MARKER).unlink()
    assert manager.status(req) == "broken"
    rebuilt = manager.ensure(req)
    assert (rebuilt.path / MARKER).is_file() and len(builds_of(manager, env.id)) == 2


def test_failed_health_check_is_an_env_build_error_and_leaves_nothing(store_config):
    from dataclasses import replace

    from envmgr.errors import EnvBuildError
    from registry.errors import ExitCode

    manager = EnvManager(store_config())
    req = request_for_requirements(["six==1.16.0"], runtime="test", config=manager.config)
    broken = replace(req, health_modules=("six", "module_the_lock_does_not_provide"))
    with pytest.raises(EnvBuildError) as info:
        manager.ensure(broken)
    assert info.value.exit_code == ExitCode.ENV_BUILD and "module_the_lock_does_not_provide" in info.value.why
    store = manager.config.env_store
    assert not [p for p in store.iterdir() if not p.name.startswith(".")]
    assert not list((store / ".tmp").iterdir())
    assert manager.status(broken) == "needs_build"
    assert manager.cached_status(broken) == (manager.env_id(broken), "needs_build")  # its lock was cached
    unresolved = replace(req, requirements=(*req.requirements, "stemsep-test-never-resolved==0.0"))
    assert manager.cached_status(unresolved) == (None, "not_resolved")  # and nothing resolves it
    assert manager.cached_lock(unresolved) is None


def test_fallback_builder_uses_the_same_lock(tmp_path, manager):
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    python = manager.interpreter(req).executable
    with_uv = EnvManager(load_config(env_store=tmp_path / "a", python_paths=[python]))
    lock = with_uv.lock(req)
    without_uv = EnvManager(load_config(env_store=tmp_path / "b", log_dir=tmp_path / "logs",
                                        python_paths=[python], use_uv=False))
    env = without_uv.ensure(req)
    meta = read_json(env.path / META)
    assert meta["builder"] == "virtualenv"
    assert env.lock.text == lock.text and env.id == with_uv.env_id(req)
    assert run_in(env, "import numpy, soundfile; print(numpy.__version__)") == lock.packages["numpy"]
    assert [b["builder"] for b in Store(tmp_path / "b", tmp_path / "logs").builds()] == ["virtualenv"]


@pytest.mark.slow
@pytest.mark.parametrize("runtime, module", [("msst", "msst"), ("audio-separator", "audio_separator.separator")])
def test_runtime_library_envs_build_and_import(manager, torch_machine, runtime, module):
    env = manager.ensure(request_for_model(entry(), runtime, manager.config))
    assert env.torch and env.torch["version"] == env.lock.packages["torch"]
    out = run_in(env, f"import {module}, torch; print(torch.__version__)")
    assert out == env.torch["version"]
    if runtime == "audio-separator":  # the env carries its own ffmpeg
        ffmpeg = run_in(env, "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
        assert os.access(ffmpeg, os.X_OK)


def test_offline_builds_from_cached_lock_and_warm_cache_and_says_so_when_it_cannot(store_config, light):
    from envmgr.errors import EnvBuildError
    from registry.errors import ExitCode

    req, env = light
    offline = EnvManager(store_config(offline=True))
    built = offline.ensure(req)  # lock cached, wheels in uv's cache: no network needed
    assert built.id == env.id and run_in(built, "import soundfile; print('ok')") == "ok"
    unknown = request_for_requirements(["package-that-was-never-cached-here==0.0.1"], config=offline.config)
    with pytest.raises(EnvBuildError) as info:
        offline.ensure(unknown)
    assert info.value.exit_code == ExitCode.ENV_BUILD and "offline" in info.value.message
