"""Which files a client of `stemsep serve` may make the server read or write.

The server reads only the inputs a job names (existing regular files, absolute paths, or uploads it
stored itself) and writes only under the output dirs the machine config allows (`serve_output_dirs`,
default `<state_dir>/serve/outputs`): a job's `output_dir` must lie inside one of them once symlinks
and `..` are resolved; without one, the job gets `<first allowed dir>/<job id>`. Uploads are stored
under `<state_dir>/serve/uploads`, each in a dir of its own, size-limited while they stream in.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig

UPLOAD_PREFIX = "upload:"  # an input naming an upload: "upload:<id>"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ ()+-]")


class PathRefused(StemSepError):
    """A client named a path the server will not read or write."""

    exit_code = ExitCode.USAGE
    code = "E_PATH_REFUSED"


class UploadTooLarge(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_UPLOAD_TOO_LARGE"


def serve_dir(config: MachineConfig) -> Path:
    """The server's own state: the job queue, its token, uploads, default outputs."""
    return config.state_dir / "serve"


@dataclass(frozen=True)
class PathPolicy:
    output_dirs: tuple[Path, ...]
    uploads: Path
    max_upload_bytes: int

    @classmethod
    def from_config(cls, config: MachineConfig, max_upload_bytes: int) -> "PathPolicy":
        allowed = tuple(config.serve_output_dirs) or (serve_dir(config) / "outputs",)
        return cls(tuple(Path(os.path.realpath(d)) for d in allowed), serve_dir(config) / "uploads", max_upload_bytes)

    def input_path(self, given: str) -> Path:
        """The file an input names: an upload of ours, or an existing regular file at an absolute path."""
        if given.startswith(UPLOAD_PREFIX):
            upload_id = given[len(UPLOAD_PREFIX):]
            folder = self.upload_dir(upload_id)
            files = sorted(folder.iterdir()) if folder is not None and folder.is_dir() else []
            if len(files) != 1:
                raise PathRefused(f"no upload {upload_id!r}", code="E_UPLOAD_UNKNOWN",
                                  hint="upload the file first (POST /v1/uploads) and use the id it returns")
            return files[0]
        path = Path(given)
        if not path.is_absolute():
            raise PathRefused(f"input {given!r} is not an absolute path",
                              why="the server's working dir is not the client's", hint="send the absolute path")
        if not path.is_file():
            raise PathRefused(f"input {given} is not a file", code="E_PATH_NOT_FILE",
                              why="it does not exist or is a dir", hint="check the path, or upload the file")
        return path

    def output_dir(self, given: str | None, job_id: str) -> Path:
        """Where a job writes: inside an allowed output dir, never elsewhere."""
        if given is None:
            return self.output_dirs[0] / job_id
        path = Path(given)
        if not path.is_absolute():
            raise PathRefused(f"output dir {given!r} is not an absolute path", hint="send the absolute path")
        real = Path(os.path.realpath(path))
        if not any(real == d or d in real.parents for d in self.output_dirs):
            raise PathRefused(f"output dir {given} is outside the output dirs this server may write",
                              code="E_OUTPUT_NOT_ALLOWED",
                              why="allowed: " + ", ".join(str(d) for d in self.output_dirs),
                              hint="use a dir inside one of them, or add one: stemsep env config set "
                                   "serve_output_dirs DIR...")
        return real

    def upload_dir(self, upload_id: str) -> Path | None:
        """The dir of an upload of ours (None for anything that is not an upload id: no path from a client)."""
        return self.uploads / upload_id if _UPLOAD_ID.match(upload_id) else None

    def new_upload(self, filename: str) -> tuple[str, Path]:
        """A fresh upload id and the path its bytes go to (the client's name, made safe, kept for the stems)."""
        name = _UNSAFE_NAME.sub("_", Path(filename).name).lstrip(".")[:120] or "upload"
        upload_id = uuid.uuid4().hex
        folder = self.uploads / upload_id
        folder.mkdir(parents=True, mode=0o700)
        return upload_id, folder / name
