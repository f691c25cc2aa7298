"""Model code that ships as an artifact of the model (e.g. HyperACE's own `bs_roformer.py`), loaded as
a new model type inside the worker, so models that need their own code run side by side with the
library's standard ones.

The guide's manual step for such models is "replace models/bs_roformer.py in your MSST checkout".
We never do that: env files are hardlinks into a shared cache, and replacing one would change every
model of that type. Instead:
- the file runs only if its sha256 is the one the job pins: the registry's sha256, or the hash the
  user trusted (`stemsep models trust`; the host writes it into the job's model entry). The file is
  hashed here, right before it runs, whatever the host checked before;
- it is executed under a private module name (`stemsep_code_<sha256 prefix>`), never under the
  library's names, and nothing in the env is written;
- an import shim resolves the repo layout such files are written against (`from models.bs_roformer
  .attend import Attend`, `from utils.model_utils import ...`) to the installed package's modules
  (`msst.models...`, `msst.utils...`): the same module objects, not copies.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from runtimes import protocol as p
from runtimes.adapter import Job
from runtimes.errors import JobError

_loaded: dict[str, ModuleType] = {}  # sha256 -> module: the same file loads once per worker


def code_artifacts(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's artifacts of kind `code`."""
    arts = model.get("artifacts") or {}
    found = [arts.get("primary"), arts.get("config"), *(arts.get("additional") or [])]
    return [a for a in found if isinstance(a, dict) and a.get("kind") == "code"]


def code_artifact_for(job: Job, model_type: str | None) -> dict[str, Any] | None:
    """The code artifact that provides `model_type`, if the model ships one."""
    for art in code_artifacts(job.model):
        if art.get("model_type") == model_type:
            return art
    return None


def load_model_class(job: Job, artifact: Mapping[str, Any], aliases: Mapping[str, str]) -> type:
    """Verify, execute (once) and return the class the code artifact provides."""
    filename = str(artifact.get("filename"))
    path = job.artifact(filename)
    pinned = (artifact.get("sha256") or "").lower()
    if not pinned:
        raise JobError(p.E_CODE_UNTRUSTED,
                       f"model code {filename} of {job.model_id} is not pinned by a sha256, so it was not run",
                       hint=f"pin its sha256 in the registry entry, or review the file and run "
                            f"`stemsep models trust {job.model_id} {filename}`")
    actual = _sha256(path)
    if actual != pinned:
        raise JobError(p.E_CODE_HASH_MISMATCH,
                       f"model code {filename} of {job.model_id} has sha256 {actual}, not the pinned {pinned}; "
                       "it was not run",
                       hint=f"the file changed after it was verified: run `stemsep models download {job.model_id}` "
                            "to fetch the pinned file again")
    module = _loaded.get(actual) or _execute(path, actual, job, filename, aliases)
    class_name = artifact.get("class_name")
    cls = getattr(module, str(class_name), None) if class_name else None
    if not isinstance(cls, type):
        classes = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__)
        raise JobError(p.E_MODEL_LOAD, f"model code {filename} of {job.model_id} defines no class {class_name!r}",
                       hint=f"set class_name of the code artifact to one of: {', '.join(classes) or '(none)'}")
    return cls


def install_import_aliases(aliases: Mapping[str, str]) -> None:
    """Resolve top-level names like `models` to packages like `msst.models` (first in sys.meta_path)."""
    for finder in sys.meta_path:
        if isinstance(finder, _AliasFinder):
            finder.aliases.update(aliases)
            return
    sys.meta_path.insert(0, _AliasFinder(dict(aliases)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _execute(path: Path, sha: str, job: Job, filename: str, aliases: Mapping[str, str]) -> ModuleType:
    install_import_aliases(aliases)
    name = f"stemsep_code_{sha[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JobError(p.E_MODEL_LOAD, f"model code {filename} of {job.model_id} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look their module up while it executes
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        sys.modules.pop(name, None)
        raise _import_error(exc, job, filename) from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise JobError(p.E_MODEL_LOAD, f"model code {filename} of {job.model_id} failed while loading: "
                                       f"{type(exc).__name__}: {exc}") from exc
    _loaded[sha] = module
    return module


def _import_error(exc: ImportError, job: Job, filename: str) -> JobError:
    """Name what is missing, and which installed version lacks it."""
    missing = exc.name or ""
    match = re.search(r"cannot import name '([^']+)' from '([^']+)'", str(exc))
    if match:  # the package is there, the name is not: usually the wrong major version
        what, package = match.group(1), match.group(2)
        version = _dist_version(package)
        return JobError(p.E_CODE_IMPORT,
                        f"model code {filename} of {job.model_id} needs `{what}` from `{package}`, which the installed "
                        f"{package.split('.')[0]}{' ' + version if version else ''} does not have",
                        hint="pin the version the code was written for in the model's requirements.pip.packages "
                             "(a user registry overlay can add it); its env is then built with it")
    return JobError(p.E_CODE_IMPORT,
                    f"model code {filename} of {job.model_id} imports `{missing or exc}`, which this env does not have",
                    hint="declare the package in the model's requirements.pip.packages (e.g. "
                         "`neuraloperator==1.0.2` for FNO models); the model then gets an env that has it")


def _dist_version(module: str) -> str | None:
    import importlib.metadata as md

    top = module.split(".")[0]
    for dist in md.packages_distributions().get(top, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)  # the real module object, registered under the alias too

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its real name


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        head, _, rest = fullname.partition(".")
        base = self.aliases.get(head)
        if base is None:
            return None
        real = f"{base}.{rest}" if rest else base
        try:
            if importlib.util.find_spec(real) is None:
                return None
        except ImportError:
            return None
        module = importlib.import_module(real)  # its own import errors are the user's to see
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real), is_package=hasattr(module, "__path__"))
