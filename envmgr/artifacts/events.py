"""Progress events of the store, one type for all: the CLI renders them as rich bars or JSON lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

# What happened; `done`/`total` are bytes.
#   start      a download of `url` begins (`done` > 0: resuming)
#   progress   bytes arrived (throttled)
#   retry      a transient failure; waiting `message` before the next try
#   fallback   `url` failed for good (`message` says why); the next source follows
#   waiting    another process holds this artifact's lock
#   verify     hashing a file
#   done       the artifact is in the store (`message`: downloaded | present | reused | imported)
#   warning    something the user should know (no pinned sha256, replaced a mismatching file...)
EVENT_KINDS = ("start", "progress", "retry", "fallback", "waiting", "verify", "done", "warning")


@dataclass(frozen=True)
class ArtifactEvent:
    kind: str
    model_id: str
    filename: str
    done: int = 0
    total: Optional[int] = None
    url: Optional[str] = None
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"type": f"artifact.{self.kind}", **{k: v for k, v in asdict(self).items() if k != "kind"}}


ProgressCallback = Callable[[ArtifactEvent], None]


def ignore(_event: ArtifactEvent) -> None:
    """The default callback."""
