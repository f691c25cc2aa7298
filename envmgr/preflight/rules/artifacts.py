"""Artifacts: present, downloadable, pinned, trusted (code) and consented (unsafe pickles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence


from envmgr.preflight.rules.codes import Finding
from envmgr.sizes import human


@dataclass(frozen=True)
class ArtifactFacts:
    """One artifact's state in the model store (envmgr.artifacts states) plus what the registry says."""

    filename: str
    kind: str
    state: str  # present | partial | missing | downloadable | hash_mismatch | unsafe
    expected_sha256: Optional[str] = None
    sha256: Optional[str] = None  # of the stored file
    size: Optional[int] = None
    expected_size: Optional[int] = None
    sources: tuple[str, ...] = ()
    path: Optional[str] = None
    detail: str = ""
    unsafe_pickle: bool = False
    trusted_sha256: Optional[str] = None  # code artifacts: the sha256 you recorded trust for
    # unsafe_pickle checkpoints: how you allowed full unpickling: "flag" (--allow-unsafe-pickle on this run),
    # "recorded" (an earlier consent for this very content), None (not allowed)
    pickle_consent: Optional[str] = None
    pickle_consent_note: str = ""  # e.g. why the flag's consent could not be remembered


def check_artifacts(model_id: str, artifacts: Sequence[ArtifactFacts], *, require_hashes: bool,
                    download: bool, allow_unsafe_pickle: bool = False) -> tuple[list[Finding], list[dict[str, Any]]]:
    findings: list[Finding] = []
    if allow_unsafe_pickle and not any(a.unsafe_pickle for a in artifacts):
        findings.append(Finding("W_UNSAFE_PICKLE_IGNORED", f"--allow-unsafe-pickle has no effect on {model_id}: the "
                                "registry marks none of its checkpoints unsafe_pickle",
                                "checkpoints load weights-only unless the registry says they cannot",
                                "to load a checkpoint that needs full unpickling, mark its artifact "
                                "`unsafe_pickle: true` in your registry overlay (only for a file you trust)",
                                subject=model_id))
    rows = []
    for a in artifacts:
        pinned = a.expected_sha256 is not None
        action = "none"

        def add(code: str, message: str, why: str = "", hint: str = "") -> None:
            findings.append(Finding(code, message, why, hint, subject=a.filename))

        if a.state == "unsafe":
            add("E_ARTIFACT_UNSAFE", f"{model_id}: refusing {a.path or a.filename}", a.detail,
                "remove it from the model store, then run again")
        elif a.state in ("downloadable", "partial") or (a.state == "hash_mismatch" and a.sources and download):
            action = "replace" if a.state == "hash_mismatch" else ("resume" if a.state == "partial" else "download")
            if not download:
                add("E_ARTIFACT_NOT_LOCAL", f"{model_id}: {a.filename} is not in the model store and downloads are off",
                    "--no-download was given", f"run `stemsep models download {model_id}`, or drop --no-download")
            elif a.state == "hash_mismatch":
                add("W_ARTIFACT_HASH_MISMATCH", f"{model_id}: the stored {a.filename} is not the pinned file; it is "
                    "downloaded again", a.detail)
            else:
                verb = "resumed" if a.state == "partial" else "downloaded"
                size = f" ({human(a.expected_size)})" if a.expected_size is not None else ""
                add("W_ARTIFACT_DOWNLOAD", f"{model_id}: {a.filename}{size} is {verb} before the job starts", f"from {a.sources[0]}" if a.sources else "",
                    f"to fetch it ahead of time: `stemsep models download {model_id}`")
        elif a.state == "hash_mismatch":
            action = "import"
            add("E_ARTIFACT_HASH_MISMATCH", f"{model_id}: the stored {a.filename} is not the pinned file", a.detail,
                f"import the right file (`stemsep models import {model_id}`)" if not a.sources else
                f"run `stemsep models download {model_id}` to replace it")
        elif a.state == "missing":
            action = "import"
            add("E_ARTIFACT_MISSING", f"{model_id}: {a.filename} is not in the model store and the registry gives "
                "no URL for it", "some files are published only on pages that need a browser",
                f"get the file from the model's homepage (`stemsep models show {model_id}`) and run "
                f"`stemsep models import {model_id}`")
        if not pinned:
            if require_hashes:
                add("E_ARTIFACT_UNPINNED", f"{model_id}: the registry pins no sha256 for {a.filename}",
                    "--require-hashes refuses files whose content the registry does not pin",
                    "add its sha256 in a registry overlay, or drop --require-hashes")
            elif a.kind != "code":  # code artifacts: the trust check below says it louder
                add("W_ARTIFACT_UNPINNED", f"{model_id}: the registry pins no sha256 for {a.filename}",
                    "its content cannot be verified; the downloaded file's sha256 is recorded",
                    "pin the sha256 in a registry overlay, or use --require-hashes to refuse unpinned files")
        if a.unsafe_pickle:
            _pickle_consent(model_id, a, add)
        trust = _code_trust(model_id, a, add) if a.kind == "code" else None
        rows.append({"filename": a.filename, "kind": a.kind, "state": a.state, "action": action, "pinned": pinned,
                     "sha256": a.sha256, "expected_sha256": a.expected_sha256, "size": a.size,
                     "expected_size": a.expected_size, "source": a.sources[0] if a.sources else None,
                     "path": a.path, "trust": trust, "unsafe_pickle": a.unsafe_pickle,
                     "unsafe_pickle_consent": (a.pickle_consent or "missing") if a.unsafe_pickle else None})
    return findings, rows


def _pickle_consent(model_id: str, a: ArtifactFacts, add: Any) -> None:
    """Full unpickling runs whatever code the file carries: only with your consent, never by default."""
    source = f" ({a.sources[0]})" if a.sources else ""
    if a.pickle_consent is None:
        add("E_UNSAFE_PICKLE", f"{model_id}: {a.filename} loads only by full unpickling, which can run any code the "
            "file carries; refused without your consent",
            "the registry marks it unsafe_pickle: torch's safe loader (weights only) cannot read it",
            f"if you trust its source{source}, run again with --allow-unsafe-pickle (remembered for this file's "
            f"content) or `stemsep models trust {model_id} {a.filename}`; otherwise pick another model")
        return
    how = ("--allow-unsafe-pickle on this run" if a.pickle_consent == "flag"
           else "your recorded consent for this file's content")
    add("W_UNSAFE_PICKLE", f"{model_id}: {a.filename} is loaded by full unpickling: any code the file carries runs "
        "in the worker with your permissions", f"allowed by {how}" + (f"; {a.pickle_consent_note}"
                                                                      if a.pickle_consent_note else ""),
        f"take it back with `stemsep models trust {model_id} {a.filename} --revoke`")


def _code_trust(model_id: str, a: ArtifactFacts, add: Any) -> str:
    """Code runs in the worker only when its sha256 is pinned by the registry or trusted by you."""
    if a.expected_sha256:
        return "pinned"
    trusted = (a.trusted_sha256 or "").lower() or None
    if trusted and (a.sha256 is None or a.sha256.lower() == trusted):
        add("W_CODE_USER_TRUSTED", f"{model_id}: {a.filename} is code you trusted (sha256 {trusted[:12]}...); the "
            "registry does not pin it", "it runs inside the worker with your permissions",
            "pin its sha256 in a registry overlay to make the trust part of the model's data")
        return "user_trusted"
    why = ("its sha256 is not pinned by the registry and you have not trusted it" if not trusted else
           f"it changed since you trusted it (trusted {trusted[:12]}..., now {str(a.sha256)[:12]}...)")
    add("E_CODE_UNTRUSTED", f"{model_id}: refusing to run the model code {a.filename}", why,
        "read the file, then trust it (`stemsep models trust` records its sha256) or pin its sha256 in a "
        "registry overlay")
    return "untrusted"
