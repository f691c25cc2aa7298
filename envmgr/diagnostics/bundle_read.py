"""Reading a debug bundle back (`stemsep debug show`, `stemsep debug replay`): its files, per model."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.diagnostics.bundle import FORMAT, REPORT
from registry.errors import ExitCode, StemSepError


class BundleUnreadable(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_BUNDLE_UNREADABLE"


@dataclass(frozen=True)
class ModelFacts:
    id: str
    entry: dict[str, Any]
    job: dict[str, Any]
    env: dict[str, Any]
    lock_text: str | None
    artifacts: list[dict[str, Any]]


class Bundle:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self._files = {name: archive.read(name) for name in archive.namelist()}
        except (OSError, zipfile.BadZipFile) as exc:
            raise BundleUnreadable(f"cannot read the debug bundle {path}", why=f"{type(exc).__name__}: {exc}",
                                   hint="give the .zip that a failed `stemsep separate` named") from exc
        self.facts = self.json("bundle.json")
        found = self.facts.get("format") if isinstance(self.facts, dict) else None
        if found != FORMAT:
            raise BundleUnreadable(f"{path} is not a debug bundle this stemsep reads",
                                   why=f"bundle.json format {found!r}; this stemsep reads format {FORMAT}",
                                   hint="read it with the stemsep version that wrote it (REPORT.md names it)")

    @property
    def names(self) -> list[str]:
        return list(self._files)

    def size(self, name: str) -> int:
        return len(self._files[name])

    def has(self, name: str) -> bool:
        return name in self._files

    def text(self, name: str) -> str:
        try:
            return self._files[name].decode("utf-8")
        except (KeyError, UnicodeDecodeError) as exc:
            raise BundleUnreadable(f"the debug bundle {self.path} lacks a readable {name}",
                                   why=f"{type(exc).__name__}: {exc}",
                                   hint="the bundle is damaged; ask for a new one") from exc

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.text(name))
        except ValueError as exc:
            raise BundleUnreadable(f"{name} in the debug bundle {self.path} is not JSON", why=str(exc),
                                   hint="the bundle is damaged; ask for a new one") from exc

    def jsonl(self, name: str) -> list[Any]:
        return [json.loads(line) for line in self.text(name).splitlines() if line.strip()] if self.has(name) else []

    @property
    def report(self) -> str:
        return self.text(REPORT)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.facts["outcome"].get("error")

    def models(self) -> list[ModelFacts]:
        out = []
        for model_id in self.facts["models"]:
            folder = f"models/{model_id}/"
            out.append(ModelFacts(model_id, self.json(folder + "entry.json"), self.json(folder + "job.json"),
                                  self.json(folder + "env.json"),
                                  self.text(folder + "lock.txt") if self.has(folder + "lock.txt") else None,
                                  self.json(folder + "artifacts.json")))
        return out

    def inputs(self) -> list[dict[str, Any]]:
        return self.json("inputs.json")

    def extract(self, name: str, target: Path) -> Path:
        """A bundled file written to `target` (the audio, for a replay)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self._files[name])
        return target
