"""Consent to unsafe unpickling, end to end: `stemsep separate` (a real CLI process, a user overlay
registry, checkpoints downloaded from a local HTTP server into the model store, the stemsep-legacy
torch env the runtime definitions build, a real worker).

- A checkpoint the registry marks `unsafe_pickle` (a harmless `argparse.Namespace` beside the weights)
  is refused before anything starts, runs with `--allow-unsafe-pickle` (the same stems as the plain
  checkpoint), is remembered for its content, and is refused again once revoked.
- A checkpoint whose unpickling would run code (it creates a marker file) never runs without consent:
  flagged but not consented, preflight blocks it; not flagged, the flag unlocks nothing and the worker's
  weights-only loader refuses it.
- Consent is not a sandbox: with it, a payload runs. The test shows it, so nobody reads more into the
  flag than it gives (docs/preflight.md, "Unsafe pickles").
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

from tests.artifacts.httpserver import FileServer
from tests.legacy.conftest import DEMO_MIX, ours_env
from tests.runtimes.conftest import sha256
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry

pytestmark = pytest.mark.envs  # builds real uv envs (stemsep-legacy torch, msst 0.1.0 for the checkpoint)

CKPT_TOOLS = Path(__file__).with_name("ckpt_tools.py")


def variant(legacy_python: Path, kind: str, src: Path, dst: Path, *extra: str) -> Path:
    subprocess.run([str(legacy_python), str(CKPT_TOOLS), kind, str(src), str(dst), *extra], check=True,
                   env=ours_env(), capture_output=True)
    return dst


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


def model(server: FileServer, model_id: str, config: Path, ckpt: Path, *, unsafe_pickle: bool) -> dict[str, Any]:
    """A tiny BS-Roformer on stemsep-legacy; its files pinned by sha256, downloadable from the local server."""
    def served(path: Path, kind: str, **extra: Any) -> dict[str, Any]:
        url = server.file(f"/{model_id}/{path.name}", path.read_bytes())
        return {"kind": kind, "filename": path.name, "url": url, "sha256": sha256(path), **extra}

    return {"id": model_id, "name": f"test: {model_id}", "architecture": "BS-Roformer",
            "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "bs_roformer"},
            "capabilities": {"stems": ["vocals", "instrumental"], "roles": ["separation"], "supports_stereo": True,
                             "supports_mono": True},
            "artifacts": {"primary": served(ckpt, "checkpoint", **({"unsafe_pickle": True} if unsafe_pickle else {})),
                          "config": served(config, "config")}}


class Cli:
    """`stemsep` with a home of its own (the overlay registry, model store, consents) and the session's envs."""

    def __init__(self, home: Path, models: list[dict[str, Any]]) -> None:
        write_user_registry(home, "pickle-models", models)
        self.home = home
        self.env = {**home_sharing_session_envs(home), "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}

    def __call__(self, *args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env, cwd=cwd, timeout=900)

    def separate(self, clip: Path, model_id: str, out: Path, *flags: str) -> tuple[int, list[dict[str, Any]], str]:
        proc = self("separate", "--json", "-o", out, clip, "-m", model_id, *flags, cwd=out.parent)
        return proc.returncode, json_events(proc.stdout), proc.stderr

    def stored(self, model_id: str) -> list[str]:
        """The checkpoints of `model_id` in this home's model store."""
        return sorted(p.name for p in (self.home / "models" / model_id).glob("*.ckpt"))


@pytest.fixture(scope="module")
def setup(legacy_python: Path, tiny_bs: tuple[Path, Path], server: FileServer,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config, plain = tiny_bs
    base = tmp_path_factory.mktemp("pickle-consent")
    marker = base / "payload-ran"
    ckpts = {"namespace": variant(legacy_python, "namespace", plain, base / "namespace.ckpt"),
             "payload": variant(legacy_python, "payload-zip", plain, base / "payload.ckpt", "--marker", str(marker))}
    assert not marker.exists()
    models = [model(server, "pk-plain", config, plain, unsafe_pickle=False),
              model(server, "pk-namespace", config, ckpts["namespace"], unsafe_pickle=True),
              model(server, "pk-payload", config, ckpts["payload"], unsafe_pickle=True),
              model(server, "pk-payload-unflagged", config, ckpts["payload"], unsafe_pickle=False)]
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    clip = base / "clip.wav"
    sf.write(clip, audio[2 * rate: 4 * rate], rate, subtype="FLOAT")
    return {"cli": Cli(base / "home", models), "clip": clip, "marker": marker, "ckpts": ckpts}


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def report(events: list[dict[str, Any]]) -> dict[str, Any]:
    return of(events, "preflight")[0]["report"]


def codes(events: list[dict[str, Any]]) -> set[str]:
    rep = report(events)
    return {f["code"] for f in rep["errors"] + rep["warnings"]}


def consent(events: list[dict[str, Any]]) -> Any:
    return [a["unsafe_pickle_consent"] for a in report(events)["resolved"]["requirements_status"]["artifacts"]
            if a["kind"] == "checkpoint"][0]


def stems(out: Path) -> dict[str, np.ndarray]:
    return {p.name.split("_(")[1].split(")")[0]: sf.read(p, dtype="float32")[0] for p in sorted(out.glob("*.wav"))}


def test_flagged_checkpoint_needs_consent_which_is_remembered_and_revocable(setup, tmp_path):
    cli, clip = setup["cli"], setup["clip"]
    # Without consent: blocked by preflight, before any download, env or worker.
    rc, events, stderr = cli.separate(clip, "pk-namespace", tmp_path / "refused")
    assert rc == 3, stderr[-3000:]
    assert "E_UNSAFE_PICKLE" in stderr and "--allow-unsafe-pickle" in stderr
    assert "E_UNSAFE_PICKLE" in codes(events) and consent(events) == "missing"
    assert not of(events, "plan") and not of(events, "worker") and not (tmp_path / "refused").exists()
    assert cli.stored("pk-namespace") == []

    # With --allow-unsafe-pickle: the job's settings carry the consent; the checkpoint loads, with warnings.
    rc, events, stderr = cli.separate(clip, "pk-namespace", tmp_path / "allowed", "--allow-unsafe-pickle")
    assert rc == 0, stderr[-3000:]
    assert "W_UNSAFE_PICKLE" in codes(events) and consent(events) == "flag"
    assert of(events, "plan")[0]["settings"]["allow_unsafe_pickle"] is True
    assert any("full unpickling" in w and "argparse.Namespace" in w for w in of(events, "result")[0]["warnings"])
    rc, plain_events, stderr = cli.separate(clip, "pk-plain", tmp_path / "plain")
    assert rc == 0, stderr[-3000:]
    assert "allow_unsafe_pickle" not in of(plain_events, "plan")[0]["settings"]
    allowed, plain = stems(tmp_path / "allowed"), stems(tmp_path / "plain")
    assert sorted(allowed) == ["instrumental", "vocals"]
    assert all(np.array_equal(allowed[s], plain[s]) for s in allowed)  # the same weights, loaded the unsafe way

    # Remembered for the file's content: the next run needs no flag.
    rc, events, stderr = cli.separate(clip, "pk-namespace", tmp_path / "again")
    assert rc == 0, stderr[-3000:]
    assert consent(events) == "recorded" and of(events, "plan")[0]["settings"]["allow_unsafe_pickle"] is True
    name = setup["ckpts"]["namespace"].name
    listing = json.loads(cli("models", "trust", "pk-namespace", "--list", "--json", cwd=tmp_path).stdout)
    assert [(r["filename"], r["kind"], r["trusted"]["sha256"]) for r in listing] == \
        [(name, "checkpoint", sha256(setup["ckpts"]["namespace"]))]

    # Revoked: blocked again.
    revoked = cli("models", "trust", "pk-namespace", name, "--revoke", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    rc, events, _ = cli.separate(clip, "pk-namespace", tmp_path / "revoked")
    assert rc == 3 and consent(events) == "missing"


def test_a_payload_never_runs_without_consent(setup, tmp_path):
    cli, clip, marker = setup["cli"], setup["clip"], setup["marker"]
    marker.unlink(missing_ok=True)
    # Flagged, no consent: preflight blocks; the file is not even downloaded.
    rc, events, _ = cli.separate(clip, "pk-payload", tmp_path / "blocked")
    assert rc == 3 and "E_UNSAFE_PICKLE" in codes(events) and cli.stored("pk-payload") == []
    # Not flagged by the registry: the flag unlocks nothing, the worker's weights-only loader refuses.
    rc, events, stderr = cli.separate(clip, "pk-payload-unflagged", tmp_path / "unflagged", "--allow-unsafe-pickle")
    assert "W_UNSAFE_PICKLE_IGNORED" in codes(events)
    assert "allow_unsafe_pickle" not in of(events, "plan")[0]["settings"]
    assert rc == 11, stderr[-3000:]
    error = of(events, "error")[0]
    assert error["code"] == "E_MODEL_LOAD" and "needs full unpickling" in error["message"]
    assert "posix.system" in error["message"] or "os.system" in error["message"]
    assert not list((tmp_path / "unflagged").glob("*.wav"))
    assert not marker.exists(), "the checkpoint's payload ran"


def test_consent_is_not_a_sandbox(setup, tmp_path):
    """With consent, full unpickling constructs whatever the file holds: this payload creates a file."""
    cli, clip, marker = setup["cli"], setup["clip"], setup["marker"]
    marker.unlink(missing_ok=True)
    rc, events, stderr = cli.separate(clip, "pk-payload", tmp_path / "out", "--allow-unsafe-pickle")
    assert rc == 0, stderr[-3000:]
    assert marker.exists()
    warning = next(w for w in report(events)["warnings"] if w["code"] == "W_UNSAFE_PICKLE")
    assert "any code the file carries runs" in warning["message"] and "--revoke" in warning["hint"]
