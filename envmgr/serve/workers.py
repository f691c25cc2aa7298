"""Warm workers: `stemsep serve` keeps a worker per env and runtime running across jobs, so a model's
imports and its loaded weights are paid once, not once per job (a batch's own workers stop with it).

One `WarmWorkers` belongs to one scheduler slot (one job at a time), so its workers never run two jobs at
once. It keeps at most `keep` workers, stopping the least recently used one to start another. A slot pinned to
a GPU starts its workers with CUDA_VISIBLE_DEVICES=<that index> (the worker sees that GPU alone, as cuda:0),
and its `worker` events say `gpu`."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from envmgr.jobs.separate import Emit, worker_event
from envmgr.worker.client import Timeouts, WorkerClient

if TYPE_CHECKING:
    from envmgr.worker.code_copy import WorkerCode


class WarmWorkers:
    def __init__(self, *, keep: int = 2, timeouts: Timeouts = Timeouts(),
                 on_stderr: Callable[[str], None] | None = None, gpu: int | None = None) -> None:
        self.keep = max(1, keep)
        self.gpu = gpu  # the GPU index this slot's workers see, None: not pinned (no GPU, or the user's choice)
        self.timeouts, self.on_stderr = timeouts, on_stderr
        self.emit: Emit = lambda event: None  # the running job's events (run_separation sets it)
        self._clients: OrderedDict[tuple[str, str], WorkerClient] = OrderedDict()
        self.current: WorkerClient | None = None  # the worker last handed to a job: the one a cancel goes to
        self.started = 0  # workers started so far (serve_bench: one model load for a run of same-model jobs)

    def get(self, env: Any, runtime: str, code: WorkerCode) -> WorkerClient:
        key = (env.id, runtime)
        client = self._clients.pop(key, None)
        if client is not None and not client.alive:  # it crashed or was stopped after a timeout
            client.close()
            client = None
        if client is None:
            while len(self._clients) >= self.keep:
                self._clients.popitem(last=False)[1].close()
            # nvidia-smi's index is the PCI bus order; CUDA counts fastest first unless told otherwise
            pinned = ({"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(self.gpu)}
                      if self.gpu is not None else None)
            client = WorkerClient(env.python, runtime, code, env_id=env.id, timeouts=self.timeouts,
                                  on_stderr=self.on_stderr, pycache_prefix=getattr(env, "pycache_prefix", None),
                                  extra_env=pinned)
            client.start()
            self.started += 1
            self.emit({**worker_event(client), "warm": False, "gpu": self.gpu})
        else:
            self.emit({"type": "worker", "pid": client.pid, "warm": True, "gpu": self.gpu})
        self._clients[key] = client  # most recently used last
        self.current = client
        return client

    def close(self) -> None:
        while self._clients:
            self._clients.popitem(last=False)[1].close()
        self.current = None
