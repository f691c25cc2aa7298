"""Artifacts (seed §3.7): safe filenames, hashes, URLs, and what each slot may hold."""

from __future__ import annotations

import re

from registry.rules.base import Hit, ModelContext, model_rule, repeats

SHA256 = re.compile(r"^[0-9a-f]{64}$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
DRIVE = re.compile(r"^[A-Za-z]:")
SLOT_KINDS = {"primary": ("checkpoint", "onnx", "other"), "config": ("config", "yaml")}


def _artifacts(entry):
    """(path, artifact) for every artifact of the model."""
    a = entry.artifacts
    if a.primary is not None:
        yield ("artifacts", "primary"), a.primary
    if a.config is not None:
        yield ("artifacts", "config"), a.config
    for i, item in enumerate(a.additional):
        yield ("artifacts", "additional", i), item


def unsafe_filename_reason(name: str) -> str | None:
    """Why `name` is not a bare file name (None when it is one). The artifact store relies on this."""
    if not name or not name.strip():
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it contains a directory separator"
    if name in (".", "..") or name.startswith(".."):
        return "it points outside the model's folder"
    if DRIVE.match(name):
        return "it names a drive"
    if "\x00" in name or any(ord(ch) < 32 for ch in name):
        return "it contains control characters"
    if name != name.strip():
        return "it has leading or trailing spaces"
    return None


@model_rule("artifact-filename-bare", summary="artifact filenames are bare names",
            hint="use a plain file name (no /, \\, .., drive or absolute path); the store puts it in the model's folder")
def filename_bare(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        reason = unsafe_filename_reason(artifact.filename)
        if reason:
            yield Hit(path + ("filename",), f"filename {artifact.filename!r} is unsafe: {reason}")


@model_rule("artifact-sha256-format", summary="sha256 is 64 lowercase hex digits",
            hint="write the full lowercase hex digest (sha256sum FILE)")
def sha256_format(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.sha256 is not None and not SHA256.match(artifact.sha256):
            yield Hit(path + ("sha256",), f"sha256 {artifact.sha256!r} is not 64 lowercase hex digits")


@model_rule("artifact-filename-unique", summary="a model's artifacts have distinct filenames", strict_only=True,
            hint="give each artifact of the model its own filename")
def filename_unique(entry, ctx: ModelContext):
    found = list(_artifacts(entry))
    for i, filename in repeats(a.filename for _p, a in found):
        yield Hit(found[i][0] + ("filename",), f"filename {filename!r} is used twice in this model")


@model_rule("artifact-url-scheme", summary="artifact urls and mirrors are http(s) URLs",
            hint="use a full https:// URL")
def url_scheme(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.url is not None and not URL.match(artifact.url):
            yield Hit(path + ("url",), f"url {artifact.url!r} is not an http(s) URL")
        for i, mirror in enumerate(artifact.mirrors):
            if not URL.match(mirror):
                yield Hit(path + ("mirrors", i), f"mirror {mirror!r} is not an http(s) URL")


@model_rule("links-url-scheme", summary="links are http(s) URLs", hint="use a full https:// URL or null")
def links_scheme(entry, ctx: ModelContext):
    for key in ("checkpoint", "config", "homepage"):
        value = getattr(entry.links, key)
        if value is not None and not URL.match(value):
            yield Hit(("links", key), f"{value!r} is not an http(s) URL")


@model_rule("artifact-primary-present", summary="models that need weights name a primary artifact",
            strict_only=True,
            hint="add artifacts.primary (the checkpoint); only torch-free built-in models run without one")
def primary_present(entry, ctx: ModelContext):
    needs_weights = entry.runtime.allowed and entry.requirements.torch.required is not False
    if needs_weights and entry.artifacts.primary is None:
        yield Hit(("artifacts", "primary"), "no primary artifact: there is nothing to download or load")


@model_rule("artifact-kind-slot", summary="primary holds a checkpoint, config a config, code only in additional",
            hint="primary: checkpoint or onnx; config: config; code artifacts go to additional")
def kind_slot(entry, ctx: ModelContext):
    a = entry.artifacts
    for slot in ("primary", "config"):
        artifact = getattr(a, slot)
        if artifact is None:
            continue
        if artifact.kind not in SLOT_KINDS[slot]:
            yield Hit(("artifacts", slot, "kind"), f"{slot} artifact has kind {artifact.kind}")
        elif artifact.kind == "yaml" and ctx.mode == "strict":
            yield Hit(("artifacts", slot, "kind"), "kind yaml is the seed proposal's word; write config")


@model_rule("code-artifact-complete", summary="code artifacts name the model type and class they provide",
            hint="set model_type (the new msst model type) and class_name (the model class in the file)")
def code_complete(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.kind == "code":
            for key in ("model_type", "class_name"):
                if not (getattr(artifact, key) or "").strip():
                    yield Hit(path + (key,), f"code artifact {artifact.filename!r} has no {key}")


@model_rule("code-artifact-model-type", summary="runtime.model_type is provided by the model's code artifact",
            hint="set runtime.model_type to the model_type of the model's code artifact")
def code_model_type(entry, ctx: ModelContext):
    provided = {a.model_type for _p, a in _artifacts(entry) if a.kind == "code" and a.model_type}
    if provided and entry.runtime.model_type not in provided:
        yield Hit(("runtime", "model_type"), f"model_type {entry.runtime.model_type!r} is not one the code "
                  f"artifacts provide ({', '.join(sorted(provided))})")


@model_rule("code-artifact-pinned", summary="code artifacts carry a sha256", severity="warning",
            hint="record the sha256 of the code file: the worker imports it, so it must be the file that was reviewed")
def code_pinned(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.kind == "code" and artifact.sha256 is None:
            yield Hit(path + ("sha256",), f"code artifact {artifact.filename!r} is not pinned by sha256")


@model_rule("artifact-unsafe-pickle-kind", summary="unsafe_pickle only on checkpoints",
            hint="unsafe_pickle applies to torch checkpoints only; remove it elsewhere")
def unsafe_pickle_kind(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.unsafe_pickle and artifact.kind != "checkpoint":
            yield Hit(path + ("unsafe_pickle",), f"unsafe_pickle on a {artifact.kind} artifact")


@model_rule("artifact-size-positive", summary="size_bytes is positive", hint="record the file size in bytes, or null")
def size_positive(entry, ctx: ModelContext):
    for path, artifact in _artifacts(entry):
        if artifact.size_bytes is not None and artifact.size_bytes <= 0:
            yield Hit(path + ("size_bytes",), f"size_bytes {artifact.size_bytes} is not positive")


@model_rule("runtime-scope-allowed", summary="artifact and pip `runtimes` name only runtimes the model allows",
            hint="scope the file or package to runtimes in runtime.allowed (or drop `runtimes`: every runtime)")
def runtime_scope_allowed(entry, ctx: ModelContext):
    if entry.runtime.catalog_only:  # no runtime runs it now; the scope still says whose code the file is
        return
    allowed = set(entry.runtime.allowed)
    scoped = [(path, artifact.runtimes) for path, artifact in _artifacts(entry)]
    scoped.append((("requirements", "pip"), entry.requirements.pip.runtimes))
    for path, runtimes in scoped:
        for i, runtime in enumerate(runtimes):
            if runtime not in allowed:
                yield Hit(path + ("runtimes", i), f"{runtime} is not among the runtimes the model allows "
                          f"({', '.join(sorted(allowed)) or 'none'})")
