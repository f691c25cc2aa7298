"""Run as a separate process by the concurrency tests: ensure one artifact, print events as JSON lines.

    python -m tests.artifacts.download_child STORE_ROOT MODEL_ID URL SHA256
"""

from __future__ import annotations

import json
import sys

from envmgr.artifacts import ArtifactStore
from tests.artifacts.conftest import FAST, entry


def main() -> None:
    root, model_id, url, sha = sys.argv[1:5]
    with ArtifactStore(root, settings=FAST) as store:
        paths = store.ensure(entry(model_id, {"filename": "model.ckpt", "url": url, "sha256": sha}),
                             progress=lambda e: print(json.dumps(e.to_dict()), flush=True))
    print(json.dumps({"type": "paths", "paths": {k: str(v) for k, v in paths.items()}}), flush=True)


if __name__ == "__main__":
    main()
