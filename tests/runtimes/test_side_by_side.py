"""One `stemsep separate` batch, three models with conflicting needs, as a user runs it (a real CLI
process, a user overlay registry in STEMSEP_HOME's config dir, artifacts downloaded from a local HTTP
server, real uv-built envs and workers cut off the network):

(a) a standard BS-Roformer in the msst env;
(b) a BS-Roformer variant whose class comes from a code artifact (extra mask branch: its checkpoint
    cannot load into the standard class), in the same env, its code loaded beside msst's;
(c) an FNO model that needs neuraloperator==1.0.2 (FNO1d, gone in 2.x), in an env of its own.

Then: which env served which model (`stemsep env list`), and the clear failures when (b)'s code is
not pinned (preflight blocks; `stemsep models trust` unblocks it) or (c)'s package pin is missing.
That msst batch stays: it proves conflicting model code side by side in ONE msst worker and the code-trust
rules, which only msst's code artifacts have.

The same kind of batch with the real architectures (issue 18): a HyperACE v1 and an FNO model (the packaged
unwa entries, tiny checkpoints of their real key layouts made by the matrix's `own-roformer` maker in
stemsep-legacy's env) and a standard BS-Roformer, all on stemsep-legacy, their preferred runtime: one env, one
worker, no code artifact fetched, no neuraloperator.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.process import TEST_HOOK_ENV
from tests.artifacts.httpserver import FileServer
from tests.conftest import REPO
from tests.matrix.cases import PACKAGED
from tests.runtimes.conftest import (
    FNO_CODE,
    FNO_PIN,
    SEGM_CODE,
    model_entry,
    runtime_env,
    sha256,
)
from tests.support.cli import (
    home_sharing_session_envs,
    json_events,
    run_cli,
    write_user_registry,
)

CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens; any proxied request fails
MAKE_MODELS = REPO / "tests" / "matrix" / "make_models.py"
VARIANT_CONFIGS = REPO / "tests" / "fixtures" / "roformer-variants"  # the golden cases' tiny configs
# test id -> (packaged entry it copies, golden case whose config it uses)
REAL_VARIANTS = {"test-legacy-hyperace": ("unwa-hyperace", "hyperace_v1"), "test-legacy-fno": ("unwa-inst-fno", "fno")}


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


def served(server: FileServer, model_id: str, path: Path, kind: str, **extra: Any) -> dict[str, Any]:
    """An artifact entry pinned to `path`'s sha256, downloadable from the local server."""
    url = server.file(f"/{model_id}/{path.name}", path.read_bytes())
    return {"kind": kind, "filename": path.name, "url": url, "sha256": sha256(path), **extra}


def registry_models(server: FileServer, tiny_bs: Any, tiny_segm: Any, tiny_fno: Any) -> dict[str, dict[str, Any]]:
    standard = model_entry("test-bs-roformer", ["msst"])
    segm = model_entry("test-bs-roformer-segm", ["msst"], model_type="bs_roformer_segm")
    fno = model_entry("test-bs-roformer-fno", ["msst"], model_type="bs_roformer_fno", pip=(FNO_PIN,))
    for entry, (config, ckpt) in ((standard, tiny_bs), (segm, tiny_segm), (fno, tiny_fno)):
        entry["artifacts"] = {"primary": served(server, entry["id"], ckpt, "checkpoint"),
                              "config": served(server, entry["id"], config, "config")}
    for entry, code in ((segm, SEGM_CODE), (fno, FNO_CODE)):
        model_type = entry["runtime"]["model_type"]
        entry["artifacts"]["additional"] = [served(server, entry["id"], code, "code", model_type=model_type,
                                                   class_name="BSRoformer")]
        entry["requirements"]["manual_steps"] = [{
            "text": f"MSST by hand: add {code.name} as model type {model_type} (do not replace bs_roformer.py)",
            "automated_by": code.name}]
    return {m["id"]: m for m in (standard, segm, fno)}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path, network_log: Path, server: FileServer,
        tiny_bs: Any, tiny_segm: Any, tiny_fno: Any) -> Any:
    """Runs `stemsep` with its own config dir (holding the overlay registry) and the session's env store."""
    home = tmp_path_factory.mktemp("cli-home")
    models = registry_models(server, tiny_bs, tiny_segm, tiny_fno)
    env = {**home_sharing_session_envs(home),
           "HTTP_PROXY": CLOSED_PORT_PROXY, "HTTPS_PROXY": CLOSED_PORT_PROXY, "ALL_PROXY": CLOSED_PORT_PROXY,
           "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "120"}
    env[TEST_HOOK_ENV] = os.environ[TEST_HOOK_ENV]  # workers: no network at all

    class Cli:
        def __init__(self) -> None:
            self.models, self.home = models, home

        def write_registry(self, *entries: dict[str, Any]) -> None:
            write_user_registry(home, "test-models", list(entries))

        def __call__(self, *args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, env=env, cwd=cwd, timeout=900)

    runner = Cli()
    runner.write_registry(*models.values())
    return runner


def test_three_conflicting_models_in_one_batch(cli, clip3, network_log, tmp_path):
    ids = list(cli.models)
    out = tmp_path / "out"
    proc = cli("separate", "--json", "-o", out, clip3, *(a for i in ids for a in ("-m", i)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = json_events(proc.stdout)
    assert [e["model"] for e in events if e["type"] == "plan"] == ids
    env_of = {e["model"]: e["env_id"] for e in events if e["type"] == "env_ready"}
    assert env_of["test-bs-roformer"] == env_of["test-bs-roformer-segm"]  # same requirements: one env, two codes
    assert env_of["test-bs-roformer-fno"] != env_of["test-bs-roformer"]  # neuraloperator 1.0.2: its own env
    # One worker per env: (b)'s code loaded into the process that had just run msst's standard class.
    assert len([e for e in events if e["type"] == "worker"]) == 2
    frames = sf.info(str(clip3)).frames
    outputs = {}
    for model_id in ids:
        for stem in ("vocals", "other"):
            path = out / f"clip3_({stem})_{model_id}.wav"
            info = sf.info(str(path))
            assert (info.subtype, info.frames, info.channels) == ("FLOAT", frames, 2)
            outputs[model_id, stem] = sf.read(str(path), dtype="float32")[0]
    assert sorted(os.listdir(out)) == sorted(f"clip3_({s})_{m}.wav" for m in ids for s in ("vocals", "other"))
    assert all(np.isfinite(a).all() and np.abs(a).max() > 1e-3 for a in outputs.values())
    assert not np.allclose(outputs["test-bs-roformer", "vocals"], outputs["test-bs-roformer-segm", "vocals"], atol=1e-3)
    assert events[-2]["type"] == "summary" and (events[-2]["ok"], events[-2]["failed"]) == (3, 0)
    assert events[-1] == {"type": "exit", "exit_code": 0}
    assert not network_log.exists(), network_log.read_text()

    # Preflight reported the code as pinned, the guide's manual steps as automated, msst's torch cap lifted.
    reports = {e["report"]["model"]: e["report"] for e in events if e["type"] == "preflight"}
    for model_id in ("test-bs-roformer-segm", "test-bs-roformer-fno"):
        status = reports[model_id]["resolved"]["requirements_status"]
        assert [a["trust"] for a in status["artifacts"] if a["kind"] == "code"] == ["pinned"]
        assert [s["state"] for s in status["manual_steps"]] == ["automated"]
    assert "W_TORCH_OVERRIDE" in {w["code"] for w in reports["test-bs-roformer"]["warnings"]}

    # `stemsep env list` says which env served which model.
    listing = cli("env", "list", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    served_by = {row["id"]: set(row["models"]) for row in json.loads(listing.stdout)["envs"]}
    assert {"test-bs-roformer", "test-bs-roformer-segm"} <= served_by[env_of["test-bs-roformer"]]
    assert "test-bs-roformer-fno" in served_by[env_of["test-bs-roformer-fno"]]
    assert "test-bs-roformer-fno" not in served_by[env_of["test-bs-roformer"]]


@pytest.fixture(scope="module")
def real_variants(server: FileServer, workdir: Path, tiny_bs: Any) -> dict[str, dict[str, Any]]:
    """Registry entries of the batch on stemsep-legacy: copies of the packaged HyperACE v1 and Inst-FNO entries
    (their msst-scoped code artifacts and neuraloperator pin kept as they are) with tiny real-layout files, and a
    standard BS-Roformer."""
    legacy = runtime_env("stemsep-legacy")
    specs: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for model_id, (packaged_id, case) in REAL_VARIANTS.items():
        entry = json.loads(json.dumps(next(m for m in json.loads(PACKAGED.read_text())["models"]
                                           if m["id"] == packaged_id)))
        entry["id"], entry["name"] = model_id, f"test: {packaged_id}, real layout"
        config = VARIANT_CONFIGS / case / "config.yaml"
        ckpt = workdir / f"{model_id}.ckpt"
        specs.append({"kind": "own-roformer", "model_type": entry["runtime"]["model_type"], "config": str(config),
                      "out": str(ckpt), "seed": len(specs) + 3})
        entry["artifacts"]["config"] = {**served(server, model_id, config, "config"),
                                        "filename": entry["artifacts"]["config"]["filename"]}
        models[model_id] = entry
    spec_file = workdir / "real-variant-specs.json"
    spec_file.write_text(json.dumps(specs))
    made = subprocess.run([str(legacy.python), str(MAKE_MODELS), str(spec_file)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    for model_id in REAL_VARIANTS:  # the checkpoints exist now: serve and pin them
        models[model_id]["artifacts"]["primary"] = served(server, model_id, workdir / f"{model_id}.ckpt", "checkpoint")
    standard = model_entry("test-legacy-bs-roformer", ["stemsep-legacy"])
    standard["requirements"]["torch"] = {"required": True}  # our Roformer needs torch (the DSP default does not)
    config, ckpt = tiny_bs
    standard["artifacts"] = {"primary": served(server, standard["id"], ckpt, "checkpoint"),
                             "config": served(server, standard["id"], config, "config")}
    return {**models, standard["id"]: standard}


def test_real_variants_and_a_standard_roformer_in_one_batch_on_legacy(cli, real_variants, clip3, network_log,
                                                                      tmp_path):
    ids = list(real_variants)
    cli.write_registry(*cli.models.values(), *real_variants.values())
    try:
        out = tmp_path / "out"
        proc = cli("separate", "--json", "-o", out, clip3, *(a for i in ids for a in ("-m", i)), cwd=tmp_path)
    finally:
        cli.write_registry(*cli.models.values())
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = json_events(proc.stdout)
    assert {e["model"]: e["runtime"] for e in events if e["type"] == "plan"} == dict.fromkeys(ids, "stemsep-legacy")
    env_of = {e["model"]: e["env_id"] for e in events if e["type"] == "env_ready"}
    print("env per model:", json.dumps(env_of))
    assert set(env_of) == set(ids) and len(set(env_of.values())) == 1  # one stemsep-legacy env for all three
    assert len([e for e in events if e["type"] == "worker"]) == 1  # and one worker: no code of theirs to isolate
    reports = {e["report"]["model"]: e["report"] for e in events if e["type"] == "preflight"}
    for model_id in REAL_VARIANTS:  # msst's code files are not this runtime's: not listed, not fetched
        status = reports[model_id]["resolved"]["requirements_status"]
        assert not [a for a in status["artifacts"] if a["kind"] == "code"]
    python = next(e["python"] for e in events if e["type"] == "env_ready")  # FNO runs without neuraloperator
    assert subprocess.run([python, "-c", "import neuralop"], capture_output=True, check=False).returncode != 0
    frames = sf.info(str(clip3)).frames
    stems = {"test-legacy-bs-roformer": ("vocals", "other")}
    expected = sorted(f"clip3_({s})_{m}.wav" for m in ids for s in stems.get(m, ("instrumental", "vocals")))
    assert sorted(os.listdir(out)) == expected
    for name in expected:
        info = sf.info(str(out / name))
        assert (info.subtype, info.frames, info.channels) == ("FLOAT", frames, 2)
        audio = sf.read(str(out / name), dtype="float32")[0]
        assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-4, name
    assert events[-2]["type"] == "summary" and (events[-2]["ok"], events[-2]["failed"]) == (3, 0)
    assert not network_log.exists(), network_log.read_text()


def test_unpinned_code_is_blocked_until_trusted(cli, clip3, tmp_path):
    segm = json.loads(json.dumps(cli.models["test-bs-roformer-segm"]))
    segm["artifacts"]["additional"][0]["sha256"] = None  # the registry no longer pins the code
    cli.write_registry(*(segm if m["id"] == segm["id"] else m for m in cli.models.values()))
    try:
        proc = cli("separate", "-o", tmp_path / "out", "-m", segm["id"], clip3, cwd=tmp_path)
        assert proc.returncode == 3, proc.stderr
        assert "E_CODE_UNTRUSTED" in proc.stderr and SEGM_CODE.name in proc.stderr
        assert "stemsep models trust" in proc.stderr
        assert not (tmp_path / "out").exists()  # nothing started
        # The user reviews the stored file and trusts it: the job runs, preflight says whose trust it is.
        download = cli("models", "download", segm["id"], cwd=tmp_path)
        assert download.returncode == 0, download.stderr
        trust = cli("models", "trust", segm["id"], SEGM_CODE.name, "--sha256", sha256(SEGM_CODE), cwd=tmp_path)
        assert trust.returncode == 0 and sha256(SEGM_CODE) in trust.stdout, trust.stderr
        proc = cli("separate", "--json", "-o", tmp_path / "out", "-m", segm["id"], clip3, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = next(e["report"] for e in json_events(proc.stdout) if e["type"] == "preflight")
        assert [a["trust"] for a in report["resolved"]["requirements_status"]["artifacts"] if a["kind"] == "code"] \
            == ["user_trusted"]
        assert len(list((tmp_path / "out").glob("*.wav"))) == 2
    finally:
        cli.write_registry(*cli.models.values())
        cli("models", "trust", segm["id"], SEGM_CODE.name, "--revoke", cwd=tmp_path)


def test_code_with_wrong_sha256_is_refused_before_it_runs(cli, clip3, tmp_path):
    segm = json.loads(json.dumps(cli.models["test-bs-roformer-segm"]))
    segm["id"] = "test-bs-roformer-segm-wrong-pin"  # its own store folder: a fresh download
    segm["artifacts"]["additional"][0]["sha256"] = "0" * 64
    cli.write_registry(*cli.models.values(), segm)
    try:
        proc = cli("separate", "-o", tmp_path / "out", "-m", segm["id"], clip3, cwd=tmp_path)
        assert proc.returncode == 8, proc.stderr
        assert "sha256" in proc.stderr and SEGM_CODE.name in proc.stderr
        assert not (tmp_path / "out").exists()
    finally:
        cli.write_registry(*cli.models.values())


def test_fno_without_its_package_pin_fails_clearly(cli, clip3, tmp_path):
    fno = json.loads(json.dumps(cli.models["test-bs-roformer-fno"]))
    fno["requirements"]["pip"]["packages"] = []  # the neuraloperator==1.0.2 pin is missing
    cli.write_registry(*(fno if m["id"] == fno["id"] else m for m in cli.models.values()))
    try:
        proc = cli("separate", "-o", tmp_path / "out", "-m", fno["id"], clip3, cwd=tmp_path)
        assert proc.returncode == 11, proc.stderr
        assert "E_CODE_IMPORT" in proc.stderr and "neuralop" in proc.stderr
        assert "requirements.pip.packages" in proc.stderr
        assert not list((tmp_path / "out").glob("*.wav"))
    finally:
        cli.write_registry(*cli.models.values())


def test_trust_records_only_reviewed_code(cli, tmp_path):
    segm = cli.models["test-bs-roformer-segm"]
    download = cli("models", "download", segm["id"], cwd=tmp_path)
    assert download.returncode == 0, download.stderr
    not_code = cli("models", "trust", segm["id"], segm["artifacts"]["primary"]["filename"], cwd=tmp_path)
    assert not_code.returncode == 2 and "no code artifact or unsafe_pickle checkpoint named" in not_code.stderr
    assert SEGM_CODE.name in not_code.stderr  # the hint names the model's code artifacts
    other_content = cli("models", "trust", segm["id"], SEGM_CODE.name, "--sha256", "f" * 64, cwd=tmp_path)
    assert other_content.returncode == 8 and "not the" in other_content.stderr
    listing = json.loads(cli("models", "trust", segm["id"], "--list", "--json", cwd=tmp_path).stdout)
    assert [(row["filename"], row["pinned_sha256"], row["trusted"]) for row in listing] == \
        [(SEGM_CODE.name, sha256(SEGM_CODE), None)]  # pinned by the registry; nothing recorded
    trusted = cli("models", "trust", segm["id"], SEGM_CODE.name, "--json", cwd=tmp_path)
    assert trusted.returncode == 0 and json.loads(trusted.stdout)["sha256"] == sha256(SEGM_CODE)
    revoked = cli("models", "trust", segm["id"], SEGM_CODE.name, "--revoke", cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    listing = json.loads(cli("models", "trust", segm["id"], "--list", "--json", cwd=tmp_path).stdout)
    assert listing[0]["trusted"] is None
