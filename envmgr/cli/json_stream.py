"""The `--json` event stream the job commands share (`separate`, `run`, `debug replay`): one JSON object per
line on stdout, flushed at once so an app sees each event as it happens."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable


def json_emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def tell_bundle(as_json: bool) -> Callable[[Path], None]:
    """How a run that went well says where its --debug-bundle went: an event, or a line on stderr."""
    def tell(path: Path) -> None:
        if as_json:
            json_emit({"type": "debug_bundle", "path": str(path)})
        else:
            sys.stderr.write(f"debug bundle: {path}\n")
    return tell
