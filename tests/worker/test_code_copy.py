"""The worker code's hash is cached per process (a long-lived server asks for it on every job), yet an edited,
added or removed source file still gives a new hash, and so a new copy."""

from __future__ import annotations

import os
from pathlib import Path

from envmgr.worker.code_copy import code_digest, ensure_worker_code


def test_the_cached_hash_follows_edits_of_the_source(tmp_path: Path) -> None:
    src = tmp_path / "runtimes"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    module = src / "sub" / "mod.py"
    module.write_text("X = 1\n")
    first = code_digest(src)
    assert code_digest(src) == first

    module.write_text("X = 22\n")  # another size
    edited = code_digest(src)
    assert edited != first
    module.write_text("X = 23\n")  # the same size: the mtime tells
    os.utime(module, ns=(1, 1))
    assert code_digest(src) not in (first, edited)
    (src / "sub" / "new.json").write_text("{}")
    added = code_digest(src)
    (src / "sub" / "new.json").unlink()
    assert added != code_digest(src)

    copy = ensure_worker_code(tmp_path / "cache", src)
    assert (copy.root / "runtimes" / "sub" / "mod.py").read_text() == "X = 23\n"
    assert copy.digest == code_digest(src)
