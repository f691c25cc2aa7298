"""Envs that can be verified and repaired: real uv envs, damaged for real, found and repaired.

Every env here is built from a uv cache of this module's own (`own_cache`), never the session's shared one
(STEMSEP_TEST_UV_CACHE): an edit in a hardlinked env is an edit of the cache it links to, and a repair
evicts packages from the cache, so damage and eviction stay in a cache no other test reads. The light
stemsep-legacy env (numpy + soundfile) is damaged in soundfile (`soundfile.py` edited) and typing-extensions
(`typing_extensions.py`, which soundfile imports, deleted): small packages, cheap to fetch again after an
eviction.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.file_stamp import STAMP
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_model
from envmgr.envs.verify import site_packages
from envmgr.errors import ConfigError
from registry.errors import ExitCode

from .conftest import cli, light_entry

pytestmark = pytest.mark.envs


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-uv-cache")


def manager_for(root: Path, cache: Path, **config) -> EnvManager:
    return EnvManager(load_config(env_store=root / "envs", log_dir=root / "logs", uv_cache_dir=cache, **config))


def light(manager: EnvManager):
    req = request_for_model(light_entry(), "stemsep-legacy", manager.config)
    return req, manager.ensure(req)


def damage(env_path: Path) -> tuple[str, str]:
    """Edit soundfile.py in place keeping its size (as an editor writing into a hardlinked file does) and delete
    typing_extensions.py; their paths relative to the env."""
    site = site_packages(env_path)
    assert site is not None
    edited, deleted = site / "soundfile.py", site / "typing_extensions.py"
    text = edited.read_bytes()
    assert b"\nimport numpy\n" in text
    with open(edited, "r+b") as fh:  # in place: the same inode, so the same file as uv's cache has
        fh.write(text.replace(b"\nimport numpy\n", b"\nimport numpz\n", 1))
    deleted.unlink()
    return edited.relative_to(env_path).as_posix(), deleted.relative_to(env_path).as_posix()


def cache_copies(cache: Path, name: str) -> list[Path]:
    return [p for p in cache.glob(f"archive-v0/*/{name}") if p.is_file()]


def run_in(env, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env.python), "-I", "-c", code], capture_output=True, text=True)


def test_a_fresh_env_verifies_and_its_stamp_holds_what_its_runtime_imports(tmp_path, own_cache):
    manager = manager_for(tmp_path, own_cache)
    _, env = light(manager)
    result = manager.verify(env.id)
    assert result.ok, result.summary()
    assert result.hashed and result.files_checked > 500 and result.bytes_hashed > 10_000_000
    assert result.files_skipped >= 2  # every RECORD lists itself without a hash
    stamped = json.loads((env.path / STAMP).read_text())["files"]
    site = site_packages(env.path).relative_to(env.path).as_posix()  # type: ignore[union-attr]
    # the health import's own files and those it loaded, and the shared libraries (libsndfile, numpy's core)
    assert {f"{site}/soundfile.py", f"{site}/typing_extensions.py", f"{site}/numpy/__init__.py"} <= set(stamped)
    assert any("_soundfile_data/libsndfile" in p for p in stamped)
    assert any(p.startswith(f"{site}/numpy/") and ".so" in p for p in stamped)
    assert 100 < len(stamped) < 2000
    meta = json.loads((env.path / "stemsep-env.json").read_text())
    assert meta["link_mode"] == "hardlink" and meta["uv_cache_dir"] == str(own_cache)


def test_a_damaged_hardlinked_env_is_broken_found_by_verify_and_repaired_from_its_source(tmp_path, own_cache):
    manager = manager_for(tmp_path, own_cache)
    req, env = light(manager)
    edited, deleted = damage(env.path)
    # Hardlinked: the edit is the cache's too (what link_mode = copy avoids).
    assert any(b"\nimport numpz\n" in p.read_bytes() for p in cache_copies(own_cache, "soundfile.py"))
    assert run_in(env, "import soundfile").returncode != 0  # what every job in it would meet

    assert manager.status(req) == "broken"
    assert "changed or deleted" in (manager.store.problem(env.id) or "")
    sized = manager.verify(env.id, quick=True)  # sizes only: the deletion, not the same-size edit
    assert sized.damaged == ["typing-extensions"] and deleted in sized.packages[0].missing
    full = manager.verify(env.id)
    by_name = {p.name: p for p in full.packages}
    assert sorted(by_name) == ["soundfile", "typing-extensions"]
    assert by_name["typing-extensions"].missing == [deleted] and by_name["soundfile"].modified == [edited]
    assert not full.own

    builds = len(manager.store.builds())
    repaired = manager.ensure(req)  # what `separate` does with a broken env: repaired in place, not rebuilt
    assert repaired.id == env.id and manager.status(req) == "ready"
    assert [b["event"] for b in manager.store.builds()[builds:]] == ["repaired"]
    assert manager.verify(env.id).ok
    imported = run_in(repaired, "import soundfile, numpy; print('ok')")
    assert imported.stdout.strip() == "ok", imported.stderr
    # The damaged file was evicted from the cache: what it holds now is the wheel's file, and a new env verifies.
    assert not any(b"\nimport numpz\n" in p.read_bytes() for p in cache_copies(own_cache, "soundfile.py"))
    other = manager_for(tmp_path / "other", own_cache)
    _, fresh = light(other)
    assert other.verify(fresh.id).ok


def test_a_cache_damaged_through_a_removed_env_does_not_damage_the_rebuilt_one(tmp_path, own_cache):
    manager = manager_for(tmp_path, own_cache)
    req, env = light(manager)
    site = site_packages(env.path)
    with open(site / "soundfile.py", "ab") as fh:  # an edit that changes the size, into the cache's inode
        fh.write(b"\nraise ImportError('edited by a user')\n")
    manager.store.remove(env.id)  # `env rm`: the damaged file stays in uv's cache
    assert any(b"edited by a user" in p.read_bytes() for p in cache_copies(own_cache, "soundfile.py"))
    rebuilt = manager.ensure(req)
    assert manager.verify(rebuilt.id).ok
    assert run_in(rebuilt, "import soundfile; print('ok')").stdout.strip() == "ok"


def test_a_copy_mode_env_keeps_edits_out_of_the_cache_and_verify_still_finds_them(tmp_path, own_cache):
    manager = manager_for(tmp_path, own_cache, link_mode="copy")
    _, env = light(manager)
    assert json.loads((env.path / "stemsep-env.json").read_text())["link_mode"] == "copy"
    path = site_packages(env.path) / "soundfile.py"  # type: ignore[operator]
    assert path.stat().st_nlink == 1
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in cache_copies(own_cache, "soundfile.py")}
    damage(env.path)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in cache_copies(own_cache, "soundfile.py")} == before
    assert manager.verify(env.id).damaged == ["soundfile", "typing-extensions"]


def test_link_mode_is_a_config_key_and_symlinks_are_refused(monkeypatch):
    monkeypatch.setenv("STEMSEP_LINK_MODE", "Copy")
    assert load_config().link_mode == "copy"
    assert load_config(link_mode="clone").sources["link_mode"] == "cli"
    monkeypatch.setenv("STEMSEP_LINK_MODE", "symlink")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "uv cache clean" in info.value.why and "copy" in info.value.hint


def test_env_verify_and_repair_commands(tmp_path, own_cache):
    env_vars = {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs"),
                "STEMSEP_UV_CACHE_DIR": str(own_cache)}
    manager = EnvManager(load_config(**{k[8:].lower(): v for k, v in env_vars.items()}))
    _, env = light(manager)
    clean = cli("env", "verify", env.id[:22], env=env_vars)
    assert clean.returncode == 0, clean.stderr
    assert f"{env.id}: ok" in clean.stdout and "listed without a hash skipped" in clean.stdout

    edited, deleted = damage(env.path)
    found = cli("env", "verify", "--all", "--json", env=env_vars)
    assert found.returncode == ExitCode.ENV_BUILD and "E_ENV_DAMAGED" in found.stderr
    report = json.loads(found.stdout)["envs"][0]
    assert not report["ok"] and {d["name"] for d in report["damaged"]} == {"soundfile", "typing-extensions"}
    told = cli("env", "verify", env.id, env=env_vars)
    assert told.returncode == ExitCode.ENV_BUILD
    assert edited in told.stdout and deleted in told.stdout and "stemsep env repair" in told.stderr

    repaired = cli("env", "repair", env.id, env=env_vars)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired soundfile, typing-extensions" in repaired.stdout
    assert cli("env", "verify", env.id, env=env_vars).returncode == 0
    again = cli("env", "repair", env.id, "--json", env=env_vars)
    assert again.returncode == 0 and json.loads(again.stdout)["envs"][0]["reinstalled"] == []
    assert os.path.exists(env.path / ".stemsep-ready")


def test_setup_repair_finds_what_the_cheap_check_cannot(tmp_path, own_cache):
    from .conftest import write_registry

    env_vars = {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs"),
                "STEMSEP_UV_CACHE_DIR": str(own_cache)}
    registry = write_registry(tmp_path / "registry.json", light_entry("integrity-a"))
    built = cli("setup", "integrity-a", "--registry", registry, "--json", env=env_vars)
    assert built.returncode == 0, built.stderr
    env_path = Path(json.loads(built.stdout)["envs"][0]["path"])
    # A same-size edit of a file no import loads (soundfile's METADATA): the stamp does not cover it.
    metadata = next((site_packages(env_path) or env_path).glob("soundfile-*.dist-info/METADATA"))
    text = metadata.read_bytes()
    with open(metadata, "r+b") as fh:
        fh.write(text.replace(b"Name: soundfile", b"Name: soundfilf", 1))
    plain = cli("setup", "integrity-a", "--registry", registry, "--json", env=env_vars)
    assert json.loads(plain.stdout)["envs"][0]["state"] == "ready"
    repaired = cli("setup", "integrity-a", "--registry", registry, "--repair", "--json", env=env_vars)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["envs"][0]["state"] == "repaired"
    assert b"Name: soundfile\n" in metadata.read_bytes()
    assert cli("env", "verify", "--all", env=env_vars).returncode == 0
