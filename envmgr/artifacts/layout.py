"""Where things live in the model store.

    <root>/<model id>/<registry filename>        verified artifacts, under the registry's names
    <root>/<model id>/.manifest.json             what each file is (sha256, size, source, time)
    <root>/<model id>/.partial/<filename>        an interrupted download, resumable (+ .json sidecar)
    <root>/.locks/<model id>/<filename>.lock     serialises downloads/imports of one artifact

One folder per model, so models whose registry filenames coincide (eight share `config.yaml`) never
clobber each other. Locks live outside the model folders so that removing a model never deletes a
lock file another process holds.
"""

from __future__ import annotations

from pathlib import Path

from envmgr import fsutil
from envmgr.artifacts.safety import check_name, refuse_symlink
from envmgr.errors import StoreError

MANIFEST_NAME = ".manifest.json"
PARTIAL_DIR = ".partial"
LOCKS_DIR = ".locks"


class StoreLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def model_dir(self, model_id: str) -> Path:
        return self.root / check_name(model_id, "model id")

    def artifact_path(self, model_id: str, filename: str) -> Path:
        return self.model_dir(model_id) / check_name(filename, "artifact filename")

    def manifest_path(self, model_id: str) -> Path:
        return self.model_dir(model_id) / MANIFEST_NAME

    def partial_path(self, model_id: str, filename: str) -> Path:
        return self.model_dir(model_id) / PARTIAL_DIR / check_name(filename, "artifact filename")

    def lock_path(self, model_id: str, name: str) -> Path:
        return self.root / LOCKS_DIR / check_name(model_id, "model id") / f"{name}.lock"

    def model_ids(self) -> list[str]:
        """Ids of the models that have a folder in the store (hidden entries are bookkeeping)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir()
                      and not p.is_symlink())


def make_dir(path: Path) -> Path:
    """Create `path` (and parents) as a real directory; refuse a symlink; OS errors become StoreError."""
    refuse_symlink(path)
    try:
        fsutil.ensure_dir(path)
    except StoreError as err:
        raise _about_model_store(err) from err
    refuse_symlink(path)
    return path


def store_error(path: Path, exc: OSError) -> StoreError:
    """The env manager's error for an OS error on a state dir, about the model store."""
    return _about_model_store(fsutil.store_error(path, exc))


def _about_model_store(err: StoreError) -> StoreError:
    err.hint = err.hint.replace("env_store", "model_store (STEMSEP_MODEL_STORE)")
    return err
