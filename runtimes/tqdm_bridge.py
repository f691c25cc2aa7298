"""Third-party runtimes report progress only through tqdm bars; this turns those bars into the
running job's `progress` events (stage `separate`) and gives the host a chance to cancel per step.

`TqdmBridge.patch(prefix)` replaces the module-level name `tqdm` in every already imported module
under `prefix` (e.g. `audio_separator.`) with a bar class bound to the bridge; the library's files
are untouched. Inside `with bridge.job(ctx):`, each bar step emits `progress` with counts that never
go down: a second bar in the same job continues where the first ended (done = finished bars' totals
+ this bar's count), and the job always ends with one event where done == total.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

STAGE = "separate"


class TqdmBridge:
    def __init__(self) -> None:
        self._ctx: Any = None
        self._base = 0.0  # totals of the bars already closed in this job
        self._done = 0.0
        bridge = self

        class Bar:
            """Enough of tqdm's interface for libraries that create bars; draws nothing."""

            def __init__(self, iterable: Any = None, desc: Any = None, total: Any = None, *args: Any,
                         **kwargs: Any) -> None:
                if total is None and iterable is not None and hasattr(iterable, "__len__"):
                    total = len(iterable)
                self.n: float = 0  # tqdm counts in floats too (update(0.5))
                self.iterable, self.total, self._closed = iterable, total, False
                bridge._step(self)

            def __iter__(self) -> Iterator[Any]:
                for item in self.iterable:
                    yield item
                    self.update(1)
                self.close()

            def __len__(self) -> int:
                return int(self.total or 0)

            def update(self, n: float = 1) -> None:
                self.n += n
                bridge._step(self)

            def close(self) -> None:
                if not self._closed:
                    self._closed = True
                    bridge._closed(self)

            def __enter__(self) -> "Bar":
                return self

            def __exit__(self, *exc: Any) -> None:
                self.close()

            @classmethod
            def write(cls, *args: Any, **kwargs: Any) -> None:
                print(*args, file=sys.stderr)

            def __getattr__(self, name: str) -> Any:  # set_description, set_postfix, refresh, clear...
                return lambda *args, **kwargs: None

        self.Bar = Bar

    def patch(self, prefix: str) -> None:
        """Point `tqdm` in every imported module under `prefix` at the bridge's bar (idempotent)."""
        for name, module in list(sys.modules.items()):
            if name.startswith(prefix) and module is not None:
                current = getattr(module, "tqdm", None)
                if isinstance(current, type) and current is not self.Bar and current.__module__.startswith("tqdm"):
                    module.tqdm = self.Bar  # type: ignore[attr-defined]

    @contextmanager
    def job(self, ctx: Any) -> Iterator[None]:
        """Route bar steps to `ctx` for the duration of one job; end with a done == total event."""
        self._ctx, self._base, self._done = ctx, 0.0, 0.0
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok:
                final = max(self._base, self._done, 1.0)
                ctx.progress(STAGE, final, final)
            self._ctx = None

    def _step(self, bar: Any) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        ctx.check_cancelled()  # raises JobCancelled inside the library's loop: the job stops at this chunk
        if bar.total:
            done = self._base + min(bar.n, bar.total)
            if done >= self._done:
                self._done = done
                ctx.progress(STAGE, done, self._base + bar.total)

    def _closed(self, bar: Any) -> None:
        if self._ctx is not None:
            self._base += bar.total or bar.n
