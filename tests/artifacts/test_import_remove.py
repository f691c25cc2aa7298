"""Import of files the user already has, and removal of stored models."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from envmgr.artifacts import ArtifactState
from envmgr.artifacts.errors import HashMismatchError, ImportSourceError, SizeMismatchError
from registry.errors import ExitCode
from tests.artifacts.conftest import Events, blob, entry, files_under

DATA = blob(120_000, seed=21)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "downloads" / "My Model (final).ckpt"
    path.parent.mkdir()
    path.write_bytes(DATA)
    return path


def model(**pins: object):
    return entry("m", {"filename": "model.ckpt", **pins}, {"filename": "config.yaml", "kind": "config"})


def test_import_hardlinks_a_pinned_file_and_records_it(store, store_root, user_file):
    e = model(sha256=SHA, size_bytes=len(DATA))
    path = store.import_file(e, e.artifacts.primary, user_file)
    assert path == store_root / "m" / "model.ckpt"
    assert path.stat().st_ino == user_file.stat().st_ino  # a hardlink: no second copy of a multi-GB file
    rec = json.loads((store_root / "m" / ".manifest.json").read_text())["artifacts"]["model.ckpt"]
    assert rec["sha256"] == SHA and rec["source"] == f"import:{user_file.resolve()}" and rec["pinned"]
    states = {s.filename: s.state for s in store.status(e)}
    assert states == {"model.ckpt": ArtifactState.PRESENT, "config.yaml": ArtifactState.MISSING}
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}


def test_import_copy(store, store_root, user_file):
    e = model(sha256=SHA)
    path = store.import_file(e, e.artifacts.primary, user_file, copy=True)
    assert path.read_bytes() == DATA and path.stat().st_ino != user_file.stat().st_ino


def test_import_across_file_systems_falls_back_to_copy(store, store_root, user_file):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == store_root.parent.stat().st_dev:
        pytest.skip("no second writable file system (/dev/shm) here")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as d:
        src = Path(d) / "model.ckpt"
        src.write_bytes(DATA)
        e = model(sha256=SHA)
        path = store.import_file(e, e.artifacts.primary, src)
        assert path.read_bytes() == DATA and path.stat().st_dev != src.stat().st_dev


def test_import_of_the_wrong_file_is_refused_and_leaves_nothing(store, store_root, user_file):
    e = model(sha256="0" * 64)
    with pytest.raises(HashMismatchError) as err:
        store.import_file(e, e.artifacts.primary, user_file)
    assert "0" * 64 in err.value.message and SHA in err.value.message
    assert err.value.exit_code == ExitCode.ARTIFACT
    assert files_under(store_root) == set() and user_file.read_bytes() == DATA


def test_import_with_the_wrong_size_is_refused_before_hashing(store, store_root, user_file):
    e = model(sha256=SHA, size_bytes=len(DATA) + 1)
    with pytest.raises(SizeMismatchError):
        store.import_file(e, e.artifacts.primary, user_file)
    assert files_under(store_root) == set()


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_import_of_a_missing_path_or_directory_is_a_usage_error(store, store_root, tmp_path, make):
    src = tmp_path / "nope.ckpt"
    if make == "directory":
        src.mkdir()
    e = model(sha256=SHA)
    with pytest.raises(ImportSourceError) as err:
        store.import_file(e, e.artifacts.primary, src)
    assert err.value.exit_code == ExitCode.USAGE and str(src) in err.value.message
    assert files_under(store_root) == set()


def test_import_unpinned_records_the_observed_hash_and_warns(store, store_root, user_file):
    e = model()
    events = Events()
    store.import_file(e, e.artifacts.primary, user_file, progress=events)
    rec = json.loads((store_root / "m" / ".manifest.json").read_text())["artifacts"]["model.ckpt"]
    assert rec["sha256"] == SHA and rec["pinned"] is False
    assert any(ev.kind == "warning" and SHA in ev.message for ev in events)


def test_import_replaces_a_mismatching_stored_file(store, store_root, user_file):
    e = model(sha256=SHA)
    (store_root / "m").mkdir(parents=True)
    (store_root / "m" / "model.ckpt").write_bytes(b"truncated")
    assert store.status(e)[0].state is ArtifactState.HASH_MISMATCH
    store.import_file(e, e.artifacts.primary, user_file)
    assert store.status(e)[0].state is ArtifactState.PRESENT


def test_file_dropped_into_the_store_by_hand_is_hashed_once_and_recorded(store, store_root):
    e = model(sha256=SHA)
    (store_root / "m").mkdir(parents=True)
    (store_root / "m" / "model.ckpt").write_bytes(DATA)
    events = Events()
    assert store.status(e, progress=events)[0].state is ArtifactState.PRESENT
    assert any(ev.kind == "verify" for ev in events)
    again = Events()
    assert store.status(e, progress=again)[0].state is ArtifactState.PRESENT
    assert not any(ev.kind == "verify" for ev in again)  # the manifest now vouches for it
    assert store.status(e, verify=True, progress=again)[0].state is ArtifactState.PRESENT
    assert any(ev.kind == "verify" for ev in again)


def test_remove_partial_only_keeps_complete_files(store, store_root, user_file):
    e = model(sha256=SHA)
    store.import_file(e, e.artifacts.primary, user_file)
    partial = store_root / "m" / ".partial" / "config.yaml"
    partial.parent.mkdir()
    partial.write_bytes(b"half")
    report = store.remove("m", partial_only=True)
    assert report.files == [partial] and report.bytes == 4
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}


def test_remove_deletes_the_model_folder_but_not_the_imported_original(store, store_root, user_file):
    e = model(sha256=SHA)
    store.import_file(e, e.artifacts.primary, user_file)
    report = store.remove("m")
    assert sorted(p.name for p in report.files) == [".manifest.json", "model.ckpt"]
    assert not (store_root / "m").exists() and user_file.read_bytes() == DATA
    assert store.remove("m").files == []  # nothing left: a no-op
