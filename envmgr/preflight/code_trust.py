"""Files whose code the user allowed to run, by content:

- code artifacts: model code (e.g. a model's own bs_roformer.py) runs in a worker only when the
  registry pins its sha256 or the user reviewed the file and trusted that exact content;
- checkpoints the registry marks `unsafe_pickle`: full unpickling (which runs whatever code the
  pickle carries) happens only with the user's consent (`--allow-unsafe-pickle`, or `stemsep models
  trust`), recorded here for the file's sha256 (the registry's pin, else the stored file's).

    <state_dir>/code-trust/<model id>.json
        {"model_id": ..., "files": {<filename>: {"sha256": ..., "trusted_at": <UTC>, "path": <file trusted>}}}

Trust names a sha256, never a file name alone: a changed file is untrusted again (preflight says so,
and the worker hashes code once more right before running it). The host passes the trusted
sha256 to the worker in the job's model entry (`pin_trusted_code`), so the worker applies one rule:
code runs only when its sha256 equals the one in the job. Consent to unpickling travels as the job's
`settings.allow_unsafe_pickle` (envmgr/jobs/separate.py), set only when preflight found it for every
flagged checkpoint of the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.preflight.confirmations import record_path
from envmgr.fsutil import atomic_write_json, read_json
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from registry.view import ArtifactView, ModelView


class CodeTrustError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_CODE_TRUST"


def trust_path(state_dir: Path, model_id: str) -> Path:
    return state_dir / "code-trust" / record_path(state_dir, model_id).name  # same file naming as confirmations


def trusted_files(state_dir: Path, model_id: str) -> dict[str, dict[str, Any]]:
    data = read_json(trust_path(state_dir, model_id), {})
    if not isinstance(data, dict) or data.get("model_id") != model_id or not isinstance(data.get("files"), dict):
        return {}
    return {name: rec for name, rec in data["files"].items() if isinstance(rec, dict) and rec.get("sha256")}


def trusted_sha256(state_dir: Path, model_id: str, filename: str) -> str | None:
    """The sha256 the user trusted for this model's code file, or None."""
    record = trusted_files(state_dir, model_id).get(filename)
    return str(record["sha256"]).lower() if record else None


def runs_code(artifact: ArtifactView) -> bool:
    """Artifacts whose loading runs code from the file: code, and checkpoints that need full unpickling."""
    return artifact.kind == "code" or bool(getattr(artifact, "unsafe_pickle", False))


def trust(state_dir: Path, entry: ModelView, filename: str, path: Path,
          expected_sha256: str | None = None) -> dict[str, Any]:
    """Record trust in the current content of `path` as the model's code artifact (or unsafe_pickle checkpoint)
    `filename`."""
    artifact = next((a for a in entry.artifacts.all() if a.filename == filename), None)
    if artifact is None or not runs_code(artifact):
        code = [a.filename for a in entry.artifacts.all() if runs_code(a)]
        raise CodeTrustError(f"{entry.id} has no code artifact or unsafe_pickle checkpoint named {filename!r}",
                             hint=f"the files you can trust: {', '.join(code)}" if code else
                             "only code artifacts and checkpoints the registry marks unsafe_pickle run code when "
                             "loaded; this model has none (its checkpoints load weights-only)")
    if not path.is_file():
        raise CodeTrustError(f"{filename} of {entry.id} is not in the model store ({path})",
                             hint=f"fetch it first: `stemsep models download {entry.id}` (or `models import`)")
    from envmgr.artifacts.manifest import sha256_file  # here: importing the artifact store costs every `separate` start

    sha = sha256_file(path)
    if expected_sha256 and expected_sha256.lower() != sha:
        raise CodeTrustError(f"{path} has sha256 {sha}, not the {expected_sha256.lower()} you reviewed",
                             why="the file in the store is not the one you meant to trust; nothing was recorded",
                             hint="check the file, then trust it again", code="E_CODE_TRUST_MISMATCH",
                             exit_code=ExitCode.ARTIFACT)
    if artifact.sha256 and artifact.sha256.lower() != sha:
        raise CodeTrustError(f"{path} has sha256 {sha}, but the registry pins {artifact.sha256.lower()}",
                             why="a pinned file runs only with its pinned content; trust cannot override it",
                             hint=f"download it again: `stemsep models download {entry.id}`",
                             code="E_CODE_TRUST_MISMATCH", exit_code=ExitCode.ARTIFACT)
    return record(state_dir, entry.id, filename, sha, path)


def record(state_dir: Path, model_id: str, filename: str, sha256: str, path: Path) -> dict[str, Any]:
    """Write the trust record of one file (atomic), replacing an earlier one."""
    rec = {"sha256": sha256.lower(), "trusted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "path": str(path)}
    files = trusted_files(state_dir, model_id)
    files[filename] = rec
    atomic_write_json(trust_path(state_dir, model_id), {"model_id": model_id, "files": files})
    return rec


def revoke(state_dir: Path, model_id: str, filename: str) -> bool:
    files = trusted_files(state_dir, model_id)
    if files.pop(filename, None) is None:
        return False
    atomic_write_json(trust_path(state_dir, model_id), {"model_id": model_id, "files": files})
    return True


def requirement_sha256(requirement: str) -> str:
    """What trust in a direct-URL pip requirement is recorded for: its exact text (the content behind a URL is
    not known before the env is built; a changed URL or path is untrusted again)."""
    import hashlib

    return hashlib.sha256(requirement.encode("utf-8")).hexdigest()


def requirement_trusted(state_dir: Path, model_id: str, requirement: str) -> bool:
    """Whether you trusted this direct-URL pip requirement of the model (`stemsep models trust MODEL REQUIREMENT`)."""
    return trusted_sha256(state_dir, model_id, requirement) == requirement_sha256(requirement)


def trust_requirement(state_dir: Path, entry: ModelView, requirement: str) -> dict[str, Any] | None:
    """Record trust in `requirement` when it is one of the model's direct-URL pip requirements; else None."""
    from registry import pep508

    url = pep508.direct_reference(requirement)
    if url is None or requirement not in entry.requirements.pip.packages:
        return None
    return record(state_dir, entry.id, requirement, requirement_sha256(requirement), Path(url))


def pin_trusted_code(model: dict[str, Any], trusted: dict[str, str]) -> dict[str, Any]:
    """The job's model entry (JSON form) with the user-trusted sha256 written into its unpinned code
    artifacts and marked `trusted_by: user`, so the worker verifies them like registry pins."""
    if not trusted:
        return model
    arts = dict(model.get("artifacts") or {})
    for slot in ("primary", "config"):
        if isinstance(arts.get(slot), dict):
            arts[slot] = _pinned(arts[slot], trusted)
    arts["additional"] = [_pinned(a, trusted) if isinstance(a, dict) else a for a in arts.get("additional") or []]
    return {**model, "artifacts": arts}


def _pinned(artifact: dict[str, Any], trusted: dict[str, str]) -> dict[str, Any]:
    sha = trusted.get(artifact.get("filename", ""))
    if artifact.get("kind") != "code" or artifact.get("sha256") or not sha:
        return artifact
    return {**artifact, "sha256": sha, "trusted_by": "user"}
