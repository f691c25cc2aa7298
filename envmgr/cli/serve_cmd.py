"""`stemsep serve`: a long-lived host for apps (docs/serve.md). `--http` (the default) serves the loopback HTTP
API, `--stdio` StemSep's desktop-app contract; the durable job queue and the scheduler (envmgr/serve/) run
behind both.

Everything heavy (Starlette, uvicorn: the `serve` extra) is imported inside the command, so other
commands' start-up does not grow."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Optional

import typer


def register(root: typer.Typer) -> None:
    """Adds `stemsep serve` to the root app."""
    root.command("serve")(serve)


def serve(
    http: bool = typer.Option(True, "--http/--no-http", help="Serve the HTTP API (default)."),
    stdio: bool = typer.Option(False, "--stdio", help="Speak StemSep's desktop-app contract as JSON lines on "
                               "stdin/stdout instead (docs/serve.md)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1). Any other "
                                       "address needs --token too."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port; the one taken is printed)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="STEMSEP_SERVE_TOKEN", show_envvar=True,
                                        help="Bearer token clients must send (default: a fresh one per start)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="Jobs run at once (default: one per "
                                              "GPU nvidia-smi lists, each slot pinned to its GPU; 1 without a GPU)."),
    max_upload_mb: int = typer.Option(2048, "--max-upload-mb", min=1, help="Largest upload accepted, in MiB."),
) -> None:
    """Run the job server: a durable queue of separation jobs, warm workers, and the HTTP API."""
    from envmgr.config import load_config
    from envmgr.errors import UsageError
    from envmgr.serve.paths import PathPolicy, serve_dir
    from envmgr.serve.queue import JobQueue
    from envmgr.serve.scheduler import Scheduler
    from envmgr.serve.security import DEFAULT_HOST, choose_token, write_token

    if stdio:
        _serve_stdio(concurrency)
        return
    if not http:
        raise UsageError("nothing to serve", hint="use --http or --stdio")
    bind = host or DEFAULT_HOST
    secret = choose_token(bind, token)
    server_http = _import_http()
    config = load_config()
    folder = serve_dir(config)
    queue = JobQueue(folder)
    slots, gpus = _slots(concurrency)
    scheduler = Scheduler(queue, config, PathPolicy.from_config(config, max_upload_mb << 20), concurrency=slots,
                          gpus=gpus)
    try:
        token_file = write_token(folder, secret)
        sock = server_http.bind(bind, port)
        url = f"http://{bind if ':' not in bind else f'[{bind}]'}:{sock.getsockname()[1]}"
        print(f"stemsep serve: listening on {url}", flush=True)
        print(f"token: {secret} (also in {token_file}, readable by you only)", flush=True)
        print(f"page: {server_http.page_url(url, secret)}", flush=True)
        if queue.requeued:
            print(f"{len(queue.requeued)} job(s) interrupted by the last stop run again first", file=sys.stderr)
        scheduler.start()
        server_http.run(scheduler, config, secret, sock)
    finally:
        scheduler.stop()
        queue.close()


def _slots(concurrency: int | None) -> tuple[int, list[int]]:
    """How many jobs run at once, and the GPUs the slots are pinned to (round-robin): one slot per GPU unless
    --concurrency says otherwise; one slot without a GPU."""
    from envmgr.serve.stdio_system import gpu_indices

    gpus = gpu_indices()
    return concurrency or max(1, len(gpus)), gpus


def _serve_stdio(concurrency: int | None) -> None:
    """The app's parent process is the client: it runs as the same user, so its output dirs are not limited
    to serve_output_dirs (a job without one still goes to the first of them)."""
    from pathlib import Path

    from envmgr.config import load_config
    from envmgr.serve.paths import PathPolicy, serve_dir
    from envmgr.serve.queue import JobQueue
    from envmgr.serve.scheduler import Scheduler
    from envmgr.serve.stdio_app import StdioServer, protocol_stdout

    out = protocol_stdout()
    config = load_config()
    queue = JobQueue(serve_dir(config))
    policy = PathPolicy.from_config(config, 0)
    paths = PathPolicy((*policy.output_dirs, Path("/")), policy.uploads, 0)
    slots, gpus = _slots(concurrency)
    scheduler = Scheduler(queue, config, paths, concurrency=slots, gpus=gpus)
    try:
        scheduler.start()
        StdioServer(scheduler, config, out).serve(sys.stdin)
    finally:
        scheduler.stop()
        queue.close()


def _import_http() -> ModuleType:
    from envmgr.errors import UsageError

    try:
        from envmgr.serve import http_server
    except ImportError as exc:
        raise UsageError(f"the HTTP server needs packages that are not installed ({exc.name})",
                         code="E_SERVE_NOT_INSTALLED", why="they come with the `serve` extra",
                         hint="pip install 'stemsep-runtime[serve]'") from exc
    return http_server
