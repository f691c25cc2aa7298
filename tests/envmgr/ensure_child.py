"""Child process for crash and concurrency tests: ensure one env, printing each build stage.

argv: request JSON, env store dir, [stage]. Build records go to <store>/../logs. With a stage, the process prints PAUSED when it reaches it
and then waits to be killed (the test sends SIGKILL to its process group).
"""

import json
import sys
import time
from pathlib import Path

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import EnvRequest


def main() -> None:
    request = EnvRequest.from_dict(json.loads(sys.argv[1]))
    pause_at = sys.argv[3] if len(sys.argv) > 3 else None

    def progress(stage: str, message: str) -> None:
        print(f"STAGE {stage}", flush=True)
        if stage == pause_at:
            print("PAUSED", flush=True)
            time.sleep(3600)

    store = Path(sys.argv[2])
    config = load_config(env_store=store, log_dir=store.parent / "logs")
    env = EnvManager(config).ensure(request, progress=progress)
    print(f"OK {env.id}", flush=True)


if __name__ == "__main__":
    main()
