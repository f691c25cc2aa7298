"""`stemsep setup` and `stemsep env ...` end to end through the real CLI, on a private env store."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from registry.errors import ExitCode

from .conftest import cli, light_entry, write_registry

pytestmark = pytest.mark.envs


@pytest.fixture
def env_vars(tmp_path: Path) -> dict[str, str]:
    return {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs")}


def ok_json(*args: str, env: dict[str, str]):
    result = cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_setup_builds_one_env_per_requirement_set_and_env_commands_manage_them(tmp_path, env_vars):
    registry = write_registry(tmp_path / "registry.json", light_entry("envtest-a"), light_entry("envtest-b"),
                              light_entry("envtest-six", ["six==1.16.0"]))
    models = ["envtest-a", "envtest-b", "envtest-six"]
    setup = ok_json("setup", *models, "--registry", str(registry), env=env_vars)
    served = {tuple(e["models"]): e for e in setup["envs"]}
    assert set(served) == {("envtest-a", "envtest-b"), ("envtest-six",)}
    assert all(e["state"] == "built" and e["size_bytes"] > 0 and e["error"] is None for e in setup["envs"])
    shared_id, six_id = served[("envtest-a", "envtest-b")]["env_id"], served[("envtest-six",)]["env_id"]

    # Second run: nothing to build; the table names both envs.
    again = cli("setup", *models, "--registry", str(registry), env=env_vars)
    assert again.returncode == 0 and shared_id in again.stdout and six_id in again.stdout
    assert "built" not in again.stdout and again.stdout.count("ready") >= 2

    listed = ok_json("env", "list", env=env_vars)
    by_id = {e["id"]: e for e in listed["envs"]}
    assert set(by_id) == {shared_id, six_id} and by_id[six_id]["models"] == ["envtest-six"]
    assert all(e["state"] == "ready" for e in listed["envs"])
    # Files shared through uv's cache (numpy, soundfile...) count once in the total.
    assert listed["total_size_bytes"] < sum(e["size_bytes"] for e in listed["envs"])

    shown = ok_json("env", "show", six_id[:22], env=env_vars)
    assert shown["id"] == six_id and "six==1.16.0" in shown["request"]["requirements"]
    assert shown["versions"]["six"] == "1.16.0" and shown["builder"] == "uv"

    lock = cli("env", "lock", six_id, env=env_vars)
    assert lock.returncode == 0 and "six==1.16.0" in lock.stdout and "--hash=sha256:" in lock.stdout
    exported = tmp_path / "six.lock.txt"
    assert cli("env", "lock", six_id, "-o", str(exported), env=env_vars).returncode == 0
    assert exported.read_text() == lock.stdout

    # Prune: the env a model used stays; the never-used one goes (least recently used first).
    EnvManager(load_config(env_store=tmp_path / "envs")).record_use(shared_id, "envtest-a")
    dry = ok_json("env", "prune", "--unused", "--dry-run", env=env_vars)
    assert [e["id"] for e in dry["would_remove"]] == [six_id]
    pruned = ok_json("env", "prune", "--unused", env=env_vars)
    assert [e["id"] for e in pruned["removed"]] == [six_id]
    assert [e["id"] for e in ok_json("env", "list", env=env_vars)["envs"]] == [shared_id]
    capped = ok_json("env", "prune", "--max-size", "1M", "--dry-run", env=env_vars)
    assert [e["id"] for e in capped["would_remove"]] == [shared_id]

    removed = ok_json("env", "rm", shared_id, env=env_vars)
    assert removed["removed"] == [shared_id] and ok_json("env", "list", env=env_vars)["envs"] == []


def test_env_commands_reject_unknown_ids(env_vars):
    for args in (("env", "show", "nope"), ("env", "lock", "nope"), ("env", "rm", "nope")):
        result = cli(*args, env=env_vars)
        assert result.returncode == ExitCode.USAGE and "nope" in result.stderr, args
    assert cli("env", "prune", "--max-size", "lots", env=env_vars).returncode == ExitCode.USAGE


def test_prune_removes_broken_envs_and_dead_builders_leftovers(tmp_path, env_vars):
    store = tmp_path / "envs"
    (store / "stemsep-legacy-0000000000000000" / "bin").mkdir(parents=True)  # no marker: a broken env
    (store / ".tmp" / "stemsep-legacy-1111111111111111.123.abcd").mkdir(parents=True)
    pruned = ok_json("env", "prune", env=env_vars)
    assert [e["id"] for e in pruned["removed"]] == ["stemsep-legacy-0000000000000000"]
    assert not any(store.iterdir()) or all(p.name.startswith(".") for p in store.iterdir())
    assert not list((store / ".tmp").iterdir())


def probe_wheel(folder: Path, name: str = "stemsep_lock_probe", version: str = "1.0") -> Path:
    """A tiny pure-Python wheel that exists only in `folder` (no index has it)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": "HERE = True\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in files.items():
            zf.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), text)  # same bytes every run
    return path


def test_an_exported_lock_carries_its_package_sources_and_syncs_offline_as_is(tmp_path):
    """The env gets a package that only a find-links dir of the machine config has; `env lock -o` writes that
    dir at the top, so a plain `uv pip sync FILE --offline` into a fresh venv installs the lock, and the same
    lock without the line cannot."""
    import uv

    wheels = tmp_path / "wheels"
    probe_wheel(wheels)
    machine = load_config()
    env = {"STEMSEP_HOME": str(tmp_path / "home"), "STEMSEP_ENV_STORE": str(tmp_path / "envs"),
           "STEMSEP_LOG_DIR": str(tmp_path / "logs")}
    no_var = ["STEMSEP_FIND_LINKS"]
    links = [*machine.find_links, str(wheels)]
    assert cli("env", "config", "set", "find_links", *links, env=env, unset=no_var).returncode == 0
    registry = write_registry(tmp_path / "registry.json", light_entry("envtest-lock-probe", ["stemsep-lock-probe==1.0"]))
    setup = cli("setup", "envtest-lock-probe", "--registry", str(registry), "--json", env=env, unset=no_var)
    assert setup.returncode == 0, setup.stderr[-3000:]
    env_id = json.loads(setup.stdout)["envs"][0]["env_id"]

    exported = tmp_path / "probe.lock.txt"
    assert cli("env", "lock", env_id, "-o", str(exported), env=env, unset=no_var).returncode == 0
    text = exported.read_text()
    assert [line for line in text.splitlines() if line.startswith("--")] == [f"--find-links {link}" for link in links]
    assert text.index(f"--find-links {wheels}") < text.index("stemsep-lock-probe==1.0")
    printed = cli("env", "lock", env_id, env=env, unset=no_var)
    assert printed.stdout == text  # printed and exported alike

    shown = json.loads(cli("env", "show", env_id, "--json", env=env, unset=no_var).stdout)
    uv_bin = uv.find_uv_bin()
    uv_env = {**os.environ, "UV_CACHE_DIR": str(machine.uv_cache_dir)}

    def sync_into(venv: Path, lock_file: Path) -> subprocess.CompletedProcess[str]:
        subprocess.run([uv_bin, "venv", "--quiet", str(venv), "--python", shown["interpreter"]["executable"]],
                       check=True, env=uv_env)
        return subprocess.run([uv_bin, "pip", "sync", str(lock_file), "--offline", "--no-config", "--python",
                               str(venv / "bin" / "python")], capture_output=True, text=True, env=uv_env, timeout=300)

    synced = sync_into(tmp_path / "fresh", exported)
    assert synced.returncode == 0, synced.stderr
    imported = subprocess.run([str(tmp_path / "fresh" / "bin" / "python"), "-c", "import stemsep_lock_probe, soundfile"])
    assert imported.returncode == 0
    bare = tmp_path / "bare.lock.txt"
    bare.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith("--find-links")))
    assert sync_into(tmp_path / "bare", bare).returncode != 0  # the lock alone does not say where the probe is
