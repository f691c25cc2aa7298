"""The model x runtime matrix's session: tiny files of every registry model's architecture, served by a local HTTP
server through a copy of the packaged registry whose artifacts point there, and one `stemsep separate` batch per
runtime (one CLI process, consecutive models of one env share its worker). Outcomes are collected per pair and
printed as a table at the end of the session (also written as JSON under the pytest tmp dir).

Files are built INSIDE the env the model runs in, with the library's own classes (msst's for MSST model types,
audio-separator's for VR and the MDX-Net ONNX shapes), one maker process per env.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.artifacts.httpserver import FileServer
from tests.conftest import REPO
from tests.matrix.cases import (
    OWN_CODE_RUNTIME,
    PACKAGED,
    REFERENCE_CONFIGS,
    MatrixModel,
    matrix_models,
)
from tests.matrix.demucs_files import demucs_specs, served_name
from tests.matrix.tiny_configs import tiny_config, write_config
from tests.runtimes.conftest import (  # noqa: F401 (fixtures)
    FNO_CODE,
    SEGM_CODE,
    demo_clip,
    network_log,
    sha256,
    single_threaded_torch,
)
from tests.support.cli import json_events, run_cli

MAKE_MODELS = Path(__file__).with_name("make_models.py")
CLIP_SECONDS = 1.5
# Where each family's files are built: the env of this runtime (the library whose classes define the format).
# Demucs: audio-separator's bundled Demucs classes write the package (htdemucs-ft runs only there; msst reads the
# same file's state).
BUILT_IN = {"roformer": "msst", "roformer-code": "msst", "mdx23c": "msst", "scnet": "msst",
            "htdemucs": "audio-separator", "apollo": "msst", "bandit": "msst", "mdx-net": "audio-separator",
            "vr": "audio-separator"}


@dataclass
class Outcome:
    """What one (model, runtime) pair did: ok | refused (preflight, with code) | failed | not-built."""

    status: str
    code: str = ""
    detail: str = ""
    stems: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Matrix:
    models: dict[str, MatrixModel]
    artifacts: dict[str, dict[str, Path]]  # model id -> registry filename -> tiny file
    unbuilt: dict[str, str]  # model id -> why no tiny file exists
    registry: Path
    clip: Path
    out: Path
    timings: dict[str, float]
    pairs: set[tuple[str, str]]  # the selected (model, runtime) cases
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    batches: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    # model id -> preflight's error codes for it before the matrix trusted its unpinned (stand-in) code
    without_consent: dict[str, list[str]] = field(default_factory=dict)
    # runtime -> its own registry copy (stemsep-legacy: the variants' real-layout checkpoints, see own_layout_files)
    registries: dict[str, Path] = field(default_factory=dict)
    # model id -> why the model's own env could not build its file (its library fails there, e.g. a torchaudio
    # built for another torch): no runtime can run it here, so only a refusal by preflight is a pass
    unmakeable: dict[str, str] = field(default_factory=dict)

    def registry_for(self, runtime: str) -> Path:
        return self.registries.get(runtime, self.registry)

    def outcome(self, model_id: str, runtime: str) -> Outcome:
        if model_id in self.unbuilt:
            return Outcome("not-built", detail=self.unbuilt[model_id])
        if model_id in self.unmakeable:
            return self.preflight_only(model_id, runtime)
        if runtime not in self.batches:
            self.batches[runtime] = self.run_batch(runtime)
        return self.batches[runtime][model_id]

    def preflight_only(self, model_id: str, runtime: str) -> Outcome:
        """Preflight's verdict on a model whose library failed in its env: a yes is a failure (the job would fail
        the same way), a refusal its outcome."""
        proc = run_cli("preflight", self.clip, "-m", model_id, "--runtime", runtime, "--json",
                       env={"STEMSEP_REGISTRY": str(self.registry_for(runtime))})
        errors = json.loads(proc.stdout)["errors"]
        if errors:
            return Outcome("refused", errors[0]["code"], errors[0]["message"])
        return Outcome("failed", "maker", f"preflight said yes, but its env cannot build it: "
                                          f"{self.unmakeable[model_id]}")

    def run_batch(self, runtime: str) -> dict[str, Outcome]:
        """One `stemsep separate` of the clip with every built model allowed on `runtime`. A model preflight
        refuses blocks the batch before anything starts: it is recorded with its code and the batch runs again
        without it."""
        todo = [m.id for m in self.models.values()
                if (m.id, runtime) in self.pairs and m.id not in self.unbuilt and m.id not in self.unmakeable]
        results: dict[str, Outcome] = {}
        started = time.monotonic()
        out = self.out / runtime
        env = {"STEMSEP_REGISTRY": str(self.registry_for(runtime))}
        self.trust_code([m for m in todo if unpinned_code(self.models[m], runtime)], runtime, env)
        while todo:
            args = [a for model_id in todo for a in ("-m", model_id)]
            # Demucs packages unpickle in full: the consent a user gives (preflight refuses them without it)
            args += ["--allow-unsafe-pickle"] if any(unsafe_pickle(self.models[m]) for m in todo) else []
            proc = run_cli("separate", self.clip, *args, "--runtime", runtime, "--json", "-o", out, env=env,
                           timeout=3600)
            events = json_events(proc.stdout)
            refused = blocked_model(events)
            if refused is not None:
                model_id, code, message = refused
                results[model_id] = Outcome("refused", code, message)
                todo.remove(model_id)
                continue
            results.update(batch_outcomes(events, todo, proc))
            break
        self.timings[f"separate {runtime}"] = time.monotonic() - started
        return results

    def trust_code(self, model_ids: list[str], runtime: str, env: dict[str, str]) -> None:
        """The consent a user gives to model code the registry does not pin, given here only to the stand-in code
        the matrix itself serves: first preflight's verdict without it (kept in `without_consent`), then what the
        refusal tells a user to do: `stemsep models download`, and `stemsep models trust MODEL FILE --sha256` of
        the file reviewed (the stand-in)."""
        todo = [m for m in model_ids if m not in self.without_consent]
        started = time.monotonic()
        for model_id in todo:
            proc = run_cli("preflight", self.clip, "-m", model_id, "--runtime", runtime, "--json", env=env)
            self.without_consent[model_id] = [e["code"] for e in json.loads(proc.stdout)["errors"]]
        if not todo:
            return
        download = run_cli("models", "download", "--runtime", runtime, *todo, env=env, timeout=600)
        assert download.returncode == 0, download.stderr[-3000:]
        for model_id in todo:
            filename = self.models[model_id].code_artifact()["filename"]
            trust = run_cli("models", "trust", model_id, filename, "--sha256",
                            sha256(self.artifacts[model_id][filename]), env=env)
            assert trust.returncode == 0, trust.stderr[-3000:]
        self.timings[f"trust {len(todo)} code files"] = time.monotonic() - started


def unsafe_pickle(model: MatrixModel) -> bool:
    """The registry marks one of the model's checkpoints as loading only by full unpickling."""
    arts = model.entry.get("artifacts") or {}
    return any(a and a.get("unsafe_pickle") for a in [arts.get("primary"), *(arts.get("additional") or [])])


def unpinned_code(model: MatrixModel, runtime: str) -> bool:
    """On `runtime`, the model runs code of its own that the registry pins no sha256 for (a pinned one is the
    stand-in's pin in the matrix registry, and runs without consent; a code file scoped to other runtimes is not
    run at all)."""
    code = model.code_artifact() if model.family == "roformer-code" else None
    return (code is not None and not code.get("sha256")
            and (not code.get("runtimes") or runtime in code["runtimes"]))


def blocked_model(events: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(model, first error code, its message) when preflight blocked the batch."""
    for event in events:
        report = event.get("report") if event["type"] == "preflight" else None
        if report and not report.get("can_proceed", True):
            error = (report.get("errors") or [{}])[0]
            return report["model"], error.get("code", "?"), error.get("message", "")
    return None


def batch_outcomes(events: list[dict[str, Any]], models: list[str],
                   proc: subprocess.CompletedProcess[str]) -> dict[str, Outcome]:
    job_model = {e["job"]: e["model"] for e in events if e["type"] == "job"}
    out: dict[str, Outcome] = {}
    for event in events:
        if event["type"] == "result":
            out[job_model[event["job"]]] = Outcome("ok", stems=event["stems"])
        elif event["type"] == "error" and event.get("model"):
            out[event["model"]] = Outcome("failed", event["code"], event["message"])
    tail = (proc.stderr or proc.stdout)[-1500:]
    for model_id in models:  # a model the batch never reached: the CLI itself broke
        out.setdefault(model_id, Outcome("failed", f"exit {proc.returncode}", tail))
    return out


# --- building the tiny files ------------------------------------------------------------------------------------
def model_env(model: MatrixModel, runtime: str) -> Any:
    """The env `stemsep separate` uses for `model` on `runtime` (built now if missing; the CLI reuses it)."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.loader import load_registry

    manager = EnvManager()
    entry = load_registry().get(model.id)
    return manager.ensure(request_for_model(entry, runtime, manager.config))


def build_envs(models: list[MatrixModel], pairs: set[tuple[str, str]], timings: dict[str, float]) -> None:
    """Every env the selected pairs' batches will use, built before them (the CLI then finds them ready), timed."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.errors import StemSepError
    from registry.loader import load_registry

    manager, registry = EnvManager(), load_registry()
    requests = {}
    for model in models:
        for runtime in (r for r in model.runtimes if (model.id, r) in pairs):
            request = request_for_model(registry.get(model.id), runtime, manager.config)
            requests.setdefault(repr(request), request)
    started = time.monotonic()
    for request in requests.values():
        try:
            manager.ensure(request)
        except StemSepError:
            pass  # the batch meets the same error for the models of this env, and reports it as their outcome
    timings[f"ensure {len(requests)} envs"] = time.monotonic() - started


def maker_env(model: MatrixModel) -> Any:
    builder = BUILT_IN[model.family]
    if builder in model.runtimes:
        return model_env(model, builder)
    from tests.runtimes.conftest import runtime_env

    return runtime_env(builder)  # e.g. a mono Roformer allowed only on stemsep-legacy: msst's class still builds it


# Model code the registry's own-code Roformers declare cannot be had here (HuggingFace is out of reach, some have no
# URL at all): the matrix serves the runtime tests' stand-ins as the entry's code file, each a class `BSRoformer` on
# msst's BS-Roformer taking its keyword arguments, written against the MSST repository layout as the published files
# are. FNO's is the real FNO1d head of neuraloperator 1.0.2 (the pin its entry declares); the others an extra branch
# whose weights the standard class cannot load.
STAND_IN_CODE = {"bs_roformer_hyperace": SEGM_CODE, "bs_roformer_hyperace_v2": SEGM_CODE,
                 "bs_roformer_large_inst": SEGM_CODE, "bs_roformer_value_residual": SEGM_CODE,
                 "bs_roformer_fno": FNO_CODE}


def stand_in_code(model: MatrixModel) -> Path:
    if model.model_type not in STAND_IN_CODE:
        raise NotImplementedError(f"no stand-in code for model type {model.model_type} (tests/matrix/conftest.py "
                                  "STAND_IN_CODE)")
    return STAND_IN_CODE[model.model_type]


def specs_for(model: MatrixModel, folder: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """(maker specs, registry filename -> file) of `model`'s tiny files in `folder`."""
    arts = model.entry.get("artifacts") or {}
    primary = folder / arts["primary"]["filename"]
    files = {arts["primary"]["filename"]: primary}
    if model.family in ("roformer", "roformer-code", "mdx23c", "scnet", "apollo", "bandit"):
        config = write_config(tiny_config(model), folder / arts["config"]["filename"])
        files[arts["config"]["filename"]] = config
        spec = {"kind": "msst", "model_type": model.model_type, "config": str(config), "out": str(primary),
                "seed": seed}
        if model.family == "roformer-code":  # the stand-in is served as the entry's code file
            code, stand_in = model.code_artifact(), stand_in_code(model)
            files[code["filename"]] = stand_in
            spec.update(code=str(stand_in), class_name=code["class_name"])
        return [spec], files
    if model.family == "mdx-net":
        data = model.entry["uvr_model_data"]
        return [{"kind": "mdx", "out": str(primary), "dim_f": data["mdx_dim_f_set"],
                 "dim_t": data["mdx_dim_t_set"]}], files
    if model.family == "vr":
        data = model.entry["uvr_model_data"]
        return [{"kind": "vr", "out": str(primary), "param": data["vr_model_param"], "nout": data.get("nout"),
                 "nout_lstm": data.get("nout_lstm"), "seed": seed}], files
    if model.family == "htdemucs":
        return demucs_specs(model, folder, seed)
    raise NotImplementedError(model.family)


def build_files(models: list[MatrixModel], root: Path, timings: dict[str, float], unmakeable: dict[str, str],
                pairs: set[tuple[str, str]]) -> tuple[dict, dict, dict]:
    """Every model's tiny files, one maker process per env. Returns (artifacts, unbuilt, own-layout checkpoints:
    model id -> {registry filename: file} for the selected pairs that run a variant with our own code); a model its
    env failed to build goes into `unmakeable` with the maker's error."""
    artifacts: dict[str, dict[str, Path]] = {}
    own: dict[str, dict[str, Path]] = {}
    unbuilt: dict[str, str] = {}
    per_env: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
    for seed, model in enumerate(models):
        if model.family == "dsp":
            artifacts[model.id] = {}
            continue
        if model.base_config is None and model.family not in ("mdx-net", "vr"):
            unbuilt[model.id] = f"no published {model.family} config among {REFERENCE_CONFIGS}"
            continue
        folder = root / model.id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            specs, files = specs_for(model, folder, seed)
        except NotImplementedError as exc:
            unbuilt[model.id] = (f"the matrix has no maker for the {model.family} family yet"
                                 if str(exc) == model.family else str(exc))
            continue
        env = maker_env(model)
        per_env.setdefault(env.id, (env, []))[1].extend(specs)
        artifacts[model.id] = files
        if any(model.own_layout(r) and (model.id, r) in pairs for r in model.runtimes):
            spec, own[model.id] = own_layout_spec(model, files, folder, seed)
            own_env = model_env(model, OWN_CODE_RUNTIME)
            per_env.setdefault(own_env.id, (own_env, []))[1].append(spec)
    for env_id, (env, specs) in per_env.items():
        started = time.monotonic()
        spec_file = root / f"specs-{env_id}.json"
        spec_file.write_text(json.dumps(specs))
        proc = subprocess.run([str(env.python), str(MAKE_MODELS), str(spec_file)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=1800, check=False)
        for model_id, error in maker_failures(proc, specs, artifacts, own).items():
            unmakeable[model_id] = error
            artifacts.pop(model_id, None)
            own.pop(model_id, None)
        timings[f"make {len(specs)} files in {env_id}"] = time.monotonic() - started
    return artifacts, unbuilt, own


def own_layout_spec(model: MatrixModel, files: dict[str, Path], folder: Path,
                    seed: int) -> tuple[dict[str, Any], dict[str, Path]]:
    """The maker spec of a checkpoint with the variant's real key layout, made in stemsep-legacy's env with our own
    model code from the same tiny config (msst's pairs keep the stand-in's checkpoint)."""
    arts = model.entry["artifacts"]
    primary, config = arts["primary"]["filename"], arts["config"]["filename"]
    out = folder / "own-layout" / primary
    out.parent.mkdir(exist_ok=True)
    spec = {"kind": "own-roformer", "model_type": model.model_type, "config": str(files[config]), "out": str(out),
            "seed": seed}
    return spec, {primary: out}


def maker_failures(proc: subprocess.CompletedProcess[str], specs: list[dict[str, Any]],
                   *file_maps: dict[str, dict[str, Path]]) -> dict[str, str]:
    """model id -> error, from make_models' `OUT: error` lines; anything else from a failed maker fails the session."""
    model_of = {str(path): model_id for files_of in file_maps for model_id, files in files_of.items()
                for path in files.values()}
    failures = {}
    for line in proc.stderr.splitlines():
        out, _, error = line.partition(": ")
        if out in model_of and any(spec["out"] == out for spec in specs):
            failures[model_of[out]] = error
    assert proc.returncode == 0 or failures, f"making tiny models failed:\n{proc.stderr[-4000:]}"
    return failures


def matrix_registry(path: Path, artifacts: dict[str, dict[str, Path]], server: FileServer) -> Path:
    """The packaged registry with every built model's artifacts downloadable from `server`: its url points there
    and a pinned sha256/size is the tiny file's (an unpinned artifact stays unpinned)."""
    data = json.loads(PACKAGED.read_text())
    for entry in data["models"]:
        files = artifacts.get(entry["id"])
        if not files:
            continue
        arts = entry["artifacts"]
        for art in [arts.get("primary"), arts.get("config"), *arts.get("additional", [])]:
            if not art or art["filename"] not in files:
                continue
            tiny = files[art["filename"]]
            serve_as(art, served_name(art["filename"], tiny), tiny, entry["id"], server)
    path.write_text(json.dumps(data, indent=1))
    return path


def serve_as(art: dict[str, Any], name: str, tiny: Path, model_id: str, server: FileServer) -> None:
    """Point the registry artifact `art` at `tiny`, served as `name`; a pinned sha256/size becomes the tiny file's."""
    art["filename"] = name
    art["url"] = server.file(f"/{model_id}/{name}", tiny.read_bytes())
    if art.get("sha256"):
        art["sha256"] = sha256(tiny)
    if art.get("size_bytes"):
        art["size_bytes"] = tiny.stat().st_size


def own_layout_registry(base: Path, path: Path, own: dict[str, dict[str, Path]], server: FileServer) -> Path:
    """The matrix registry for the own-code runtime: each variant's checkpoint is the real-layout one, under its own
    name (the model store keeps files by model and name, and msst's stand-in checkpoint may be there already)."""
    data = json.loads(base.read_text())
    for entry in data["models"]:
        for name, tiny in own.get(entry["id"], {}).items():
            art = entry["artifacts"]["primary"]
            assert art["filename"] == name
            serve_as(art, f"own-layout-{name}", tiny, entry["id"], server)
    path.write_text(json.dumps(data, indent=1))
    return path


@pytest.fixture(scope="session")
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


RESULTS: dict[str, Any] = {}  # filled by the session; printed by pytest_terminal_summary


def selected_pairs(session: pytest.Session) -> set[tuple[str, str]]:
    """The (model, runtime) pairs of the session's selected matrix cases (all of them unless -k/ids narrow it):
    only their files and envs are built."""
    pairs = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "model_id" in params and "runtime" in params:
            pairs.add((params["model_id"], params["runtime"]))
    return pairs


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path,
           network_log: Path, server: FileServer) -> Iterator[Matrix]:  # noqa: F811
    if not REFERENCE_CONFIGS.is_dir():
        pytest.skip(f"the MSST reference configs are not available at {REFERENCE_CONFIGS}")
    root = tmp_path_factory.mktemp("matrix")
    timings: dict[str, float] = {}
    pairs = selected_pairs(request.session)
    models = [m for m in matrix_models() if any((m.id, r) in pairs for r in m.runtimes)]
    build_envs(models, pairs, timings)
    started = time.monotonic()
    unmakeable: dict[str, str] = {}
    artifacts, unbuilt, own = build_files(models, root / "files", timings, unmakeable, pairs)
    timings["make tiny files"] = time.monotonic() - started
    registry = matrix_registry(root / "registry.json", artifacts, server)
    registries = {OWN_CODE_RUNTIME: own_layout_registry(registry, root / "registry-own-layout.json", own, server)}
    clip = demo_clip(root / "clip.wav", CLIP_SECONDS)
    result = Matrix({m.id: m for m in models}, artifacts, unbuilt, registry, clip, root / "out", timings, pairs,
                    unmakeable=unmakeable, registries=registries)
    RESULTS.update(matrix=result, json=root / "matrix-summary.json")
    yield result
    assert not network_log.exists(), network_log.read_text()


def record(matrix: Matrix, model_id: str, runtime: str, outcome: Outcome, known: str | None) -> None:
    matrix.outcomes[(model_id, runtime)] = outcome
    if known and outcome.status != "ok":
        outcome.detail = f"known: {known}"


def summary_rows(matrix: Matrix) -> list[dict[str, str]]:
    rows = []
    for (model_id, runtime), o in sorted(matrix.outcomes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        model = matrix.models[model_id]
        failed = "failed, known" if o.detail.startswith("known:") else "FAILED"
        status = {"ok": "ok", "refused": f"refused by preflight ({o.code})"}.get(o.status,
                                                                                 f"{failed} ({o.code or o.status})")
        rows.append({"model": model_id, "runtime": runtime, "family": model.family, "source": model.source_for(runtime),
                     "outcome": status, "detail": o.detail[:300]})
    return rows


def pytest_terminal_summary(terminalreporter: Any) -> None:
    matrix: Matrix | None = RESULTS.get("matrix")
    if matrix is None or not matrix.outcomes:
        return
    rows = summary_rows(matrix)
    write = terminalreporter.write_line
    terminalreporter.section("model x runtime matrix")
    width = max(len(r["model"]) for r in rows)
    for r in rows:
        detail = f"  {r['detail'][:140]}" if r["outcome"] != "ok" else ""
        write(f"{r['model']:<{width}}  {r['runtime']:<16} {r['family']:<13} {r['source']:<17} {r['outcome']}{detail}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"].split(" (")[0]] = counts.get(r["outcome"].split(" (")[0], 0) + 1
    write("totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    write("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in matrix.timings.items()))
    path: Path = RESULTS["json"]
    path.write_text(json.dumps({"rows": rows, "timings": matrix.timings}, indent=1))
    write(f"matrix summary JSON: {path}")

