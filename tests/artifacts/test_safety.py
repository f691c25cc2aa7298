"""No model id, filename, URL or server header can make the store write outside the model's folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from envmgr.artifacts import ArtifactState
from envmgr.artifacts.errors import DownloadFailedError, UnsafePathError
from registry.errors import ExitCode
from tests.artifacts.conftest import blob, entry, files_under

DATA = blob(50_000, seed=3)
SHA = hashlib.sha256(DATA).hexdigest()


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("filename", [
    "../evil.ckpt", "../../evil.ckpt", "/tmp/evil.ckpt", "sub/evil.ckpt", "..", ".", "..\\evil.ckpt",
    "C:evil.ckpt", ".hidden.ckpt", "", "evil\x00.ckpt", "a" * 300, " evil.ckpt",
])
def test_traversal_in_filenames_is_refused_before_any_request(server, store, tmp_path, filename):
    url = server.file("/m.ckpt", DATA)
    before = everything_under(tmp_path)
    with pytest.raises(UnsafePathError) as err:
        store.ensure(entry("m", {"filename": filename, "url": url, "sha256": SHA}))
    assert err.value.exit_code == ExitCode.ARTIFACT and err.value.code == "E_ARTIFACT_UNSAFE_PATH"
    assert server.hits == []
    assert everything_under(tmp_path) == before  # not one new file or folder anywhere
    [st] = store.status(entry("m", {"filename": filename, "url": url}))
    assert st.state is ArtifactState.UNSAFE


@pytest.mark.parametrize("model_id", ["../outside", "/abs", "a/b", "..", ".locks", ".manifest.json"])
def test_traversal_in_model_ids_is_refused(server, store, tmp_path, model_id):
    url = server.file("/m.ckpt", DATA)
    before = everything_under(tmp_path)
    with pytest.raises(UnsafePathError):
        store.ensure(entry(model_id, {"filename": "model.ckpt", "url": url}))
    with pytest.raises(UnsafePathError):
        store.remove(model_id)
    assert server.hits == [] and everything_under(tmp_path) == before


@pytest.mark.parametrize("path", ["/../../escape.ckpt", "/a/%2e%2e/%2e%2e/escape.ckpt", "/x/..%2f..%2fescape.ckpt"])
def test_traversal_in_urls_only_ever_writes_the_registry_filename(server, store, store_root, tmp_path, path):
    # Whatever the URL path says, the file lands under the registry's filename in the model folder.
    server.file("/escape.ckpt", DATA)
    server.file(path, DATA)
    url = server.base + path
    before = everything_under(tmp_path)
    store.ensure(entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA}))
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    new = everything_under(tmp_path) - before
    assert {n for n in new if not n.startswith("store/.locks")} == {
        "store", "store/m", "store/m/model.ckpt", "store/m/.manifest.json"}


def test_content_disposition_filename_is_ignored(server, store, store_root, tmp_path):
    url = server.file("/cd", DATA, headers={"Content-Disposition": 'attachment; filename="../../pwned.ckpt"'})
    store.ensure(entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA}))
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/x.ckpt", "//no-scheme/x", "http:///nohost"])
def test_non_http_urls_are_refused(store, store_root, url):
    with pytest.raises(DownloadFailedError) as err:
        store.ensure(entry("m", {"filename": "model.ckpt", "url": url}))
    assert url in err.value.message
    assert files_under(store_root) == set()


def test_redirect_to_a_file_url_is_refused(server, store, store_root):
    url = server.redirect("/to-file", "file:///etc/hostname")
    with pytest.raises(DownloadFailedError):
        store.ensure(entry("m", {"filename": "model.ckpt", "url": url}))
    assert files_under(store_root) == set()


def test_symlinked_model_folder_is_refused(server, store, store_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store_root.mkdir()
    (store_root / "m").symlink_to(outside)
    url = server.file("/m.ckpt", DATA)
    e = entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA})
    assert store.status(e)[0].state is ArtifactState.UNSAFE
    with pytest.raises(UnsafePathError):
        store.ensure(e)
    assert list(outside.iterdir()) == [] and server.hits == []
    # Removing the model removes the link, never what it points to.
    report = store.remove("m")
    assert report.files == [store_root / "m"] and outside.is_dir() and not (store_root / "m").exists()


def test_symlinked_artifact_is_unsafe_and_never_written_through(server, store, store_root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (store_root / "m").mkdir(parents=True)
    (store_root / "m" / "model.ckpt").symlink_to(victim)
    url = server.file("/m.ckpt", DATA)
    e = entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA})
    [st] = store.status(e)
    assert st.state is ArtifactState.UNSAFE
    with pytest.raises(UnsafePathError) as err:
        store.ensure(e)
    assert "symbolic link" in err.value.message
    assert victim.read_text() == "precious" and server.hits == []


def test_symlinked_partial_is_not_followed(server, store, store_root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (store_root / "m" / ".partial").mkdir(parents=True)
    os.symlink(victim, store_root / "m" / ".partial" / "model.ckpt")
    url = server.file("/m.ckpt", DATA)
    store.ensure(entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA}))
    assert victim.read_text() == "precious"
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
