"""Downloads against a real HTTP server: resume, retries, mirrors, redirects, bad servers."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from envmgr.artifacts import ArtifactState, ArtifactStore, DownloadSettings
from envmgr.artifacts.errors import (
    DownloadFailedError,
    HashMismatchError,
    HashRequiredError,
    InsufficientSpaceError,
    NotAFileError,
    SizeMismatchError,
)
from registry.errors import ExitCode
from tests.artifacts.conftest import FAST, Events, blob, entry, files_under

DATA = blob(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def pinned(url: str, **extra: object) -> dict:
    return {"filename": "model.ckpt", "url": url, "sha256": SHA, **extra}


def test_download_verifies_records_and_leaves_only_the_file(server, store, store_root):
    url = server.file("/m.ckpt", DATA)
    e = entry("m1", pinned(url, size_bytes=len(DATA)))
    events = Events()
    paths = store.ensure(e, progress=events)
    path = store_root / "m1" / "model.ckpt"
    assert paths == {"model.ckpt": path}
    assert path.read_bytes() == DATA
    assert files_under(store_root) == {"m1/model.ckpt", "m1/.manifest.json"}
    rec = json.loads((store_root / "m1" / ".manifest.json").read_text())["artifacts"]["model.ckpt"]
    assert (rec["sha256"], rec["size"], rec["source"], rec["pinned"]) == (SHA, len(DATA), url, True)
    assert rec["recorded_at"].endswith("Z")
    assert events.kinds()[0] == "start" and events.kinds()[-1] == "done"
    assert [s.state for s in store.status(e)] == [ArtifactState.PRESENT]
    # A second ensure is a no-op: no new request.
    store.ensure(e)
    assert len(server.hits_for("/m.ckpt")) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_resume_after_the_server_cuts_the_connection_at_a_random_byte(server, store, store_root, seed):
    import random

    cut = random.Random(seed).randrange(1, len(DATA) - 1)
    url = server.file("/cut.ckpt", DATA, cut_at=cut, cut_times=1)
    e = entry("m", pinned(url))
    events = Events()
    store.ensure(e, progress=events)
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    hits = server.hits_for("/cut.ckpt")
    assert len(hits) == 2, [(h.range, h.sent) for h in hits]
    got = hits[0].sent
    assert 0 < got <= cut
    # The second request resumes where the first stopped (Range + If-Range), not from byte 0.
    assert hits[1].range == f"bytes={got}-" and hits[1].if_range == server.etag_of("/cut.ckpt")
    assert hits[1].status == 206 and hits[1].sent == len(DATA) - got
    assert "retry" in events.kinds()
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}


def test_resume_across_runs_from_the_partial_file(server, store_root):
    url = server.file("/c.ckpt", DATA, cut_at=100_000, cut_times=3)
    e = entry("m", pinned(url))
    no_retries = DownloadSettings(retries=0, backoff=0.01)
    with ArtifactStore(store_root, settings=no_retries) as first:
        with pytest.raises(DownloadFailedError):
            first.ensure(e)
        [st] = first.status(e)
    assert st.state is ArtifactState.PARTIAL and st.size == 100_000
    assert not (store_root / "m" / "model.ckpt").exists()
    # Next run (a new process would do the same): resumes the partial; the server cut once more at
    # 100 kB into the second request and then served the rest.
    with ArtifactStore(store_root, settings=FAST) as second:
        second.ensure(e)
    hits = server.hits_for("/c.ckpt")
    assert [h.range for h in hits] == [None, "bytes=100000-", "bytes=200000-"]
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}


def test_server_ignoring_range_restarts_from_zero(server, store, store_root):
    url = server.file("/nr.ckpt", DATA, ranges=False, cut_at=50_000, cut_times=1)
    store.ensure(entry("m", pinned(url)))
    hits = server.hits_for("/nr.ckpt")
    assert hits[1].range == "bytes=50000-" and hits[1].status == 200  # asked to resume, got the whole file
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


def test_wrong_content_range_restarts_instead_of_corrupting(server, store, store_root):
    partial = store_root / "m" / ".partial" / "model.ckpt"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:1000])
    url = server.wrong_range("/wr.ckpt", DATA)
    store.ensure(entry("m", pinned(url)))
    assert [h.range for h in server.hits_for("/wr.ckpt")] == ["bytes=1000-", None]
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


def test_complete_partial_is_verified_without_downloading_again(server, store, store_root):
    partial = store_root / "m" / ".partial" / "model.ckpt"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA)
    url = server.file("/full.ckpt", DATA)
    store.ensure(entry("m", pinned(url)))
    [hit] = server.hits_for("/full.ckpt")
    assert hit.status == 416 and hit.sent == 0
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


def test_404_then_mirror(server, store, store_root):
    missing = server.url("/gone.ckpt")
    mirror = server.file("/mirror.ckpt", DATA)
    events = Events()
    store.ensure(entry("m", pinned(missing, mirrors=[mirror])), progress=events)
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    assert len(server.hits_for("/gone.ckpt")) == 1  # a 404 is final: not retried
    fallback = [e for e in events if e.kind == "fallback"]
    assert fallback and "404" in fallback[0].message and fallback[0].url == missing


def test_legacy_entry_falls_back_to_links_checkpoint_and_config(server, store, store_root):
    cfg = b"audio:\n  chunk_size: 485100\n"
    e = entry("legacy", {"filename": "model.ckpt", "sha256": SHA}, {"filename": "config.yaml", "kind": "config"},
              links={"checkpoint": server.file("/l.ckpt", DATA), "config": server.file("/l.yaml", cfg)})
    store.ensure(e)
    assert (store_root / "legacy" / "model.ckpt").read_bytes() == DATA
    assert (store_root / "legacy" / "config.yaml").read_bytes() == cfg


def test_transient_5xx_is_retried_with_backoff(server, store, store_root):
    ok = server.file("/ok-later", DATA)
    target = server.routes["/ok-later"]
    url = server.status("/flaky.ckpt", 503, times=2, then=target, headers={"Retry-After": "0"})
    events = Events()
    store.ensure(entry("m", pinned(url)), progress=events)
    assert [h.status for h in server.hits_for("/flaky.ckpt")] == [503, 503, 200]
    assert events.kinds().count("retry") == 2
    assert ok  # the route was only used through the flaky one
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


def test_redirect_chain_is_followed(server, store, store_root):
    final = server.file("/final.ckpt", DATA)
    hop2 = server.redirect("/hop2", final, 307)
    hop1 = server.redirect("/hop1", hop2, 301)
    start = server.redirect("/start.ckpt", hop1, 302)
    store.ensure(entry("m", pinned(start)))
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    assert [h.path for h in server.hits[:4]] == ["/start.ckpt", "/hop1", "/hop2", "/final.ckpt"]


def test_redirect_loop_fails_cleanly(server, store, store_root):
    loop = server.redirect("/loop-a", server.url("/loop-b"))
    server.redirect("/loop-b", loop)
    with pytest.raises(DownloadFailedError) as err:
        store.ensure(entry("m", pinned(loop)))
    assert "redirects" in str(err.value) and err.value.exit_code == ExitCode.ARTIFACT
    assert files_under(store_root) == set()


def test_wrong_announced_size_is_refused_before_the_body(server, store, store_root):
    url = server.file("/big.ckpt", DATA + b"extra")
    with pytest.raises(SizeMismatchError) as err:
        store.ensure(entry("m", pinned(url, size_bytes=len(DATA))))
    assert f"{len(DATA):,}" in err.value.message and f"{len(DATA) + 5:,}" in err.value.message
    assert files_under(store_root) == set()


def test_unannounced_oversize_body_is_cut_off(server, store, store_root):
    url = server.file("/chunked.ckpt", DATA + blob(100_000, 9), length=False)
    with pytest.raises(SizeMismatchError) as err:
        store.ensure(entry("m", pinned(url, size_bytes=len(DATA))))
    assert "more than" in err.value.message
    assert files_under(store_root) == set()


def test_short_file_without_length_is_a_size_mismatch(server, store, store_root):
    url = server.file("/short.ckpt", DATA[:-10], length=False)
    with pytest.raises(SizeMismatchError):
        store.ensure(entry("m", {"filename": "model.ckpt", "url": url, "size_bytes": len(DATA)}))
    assert files_under(store_root) == set()


def test_wrong_sha256_names_expected_and_actual_and_deletes(server, store, store_root):
    other = blob(len(DATA), seed=5)
    url = server.file("/evil.ckpt", other)
    with pytest.raises(HashMismatchError) as err:
        store.ensure(entry("m", pinned(url)))
    text = str(err.value)
    assert SHA in text and hashlib.sha256(other).hexdigest() in text
    assert err.value.exit_code == ExitCode.ARTIFACT and err.value.code == "E_ARTIFACT_SHA256_MISMATCH"
    assert files_under(store_root) == set()
    assert store.status(entry("m", pinned(url)))[0].state is ArtifactState.DOWNLOADABLE


def test_wrong_sha256_on_first_source_then_good_mirror(server, store, store_root):
    bad = server.file("/bad.ckpt", blob(len(DATA), seed=6))
    good = server.file("/good.ckpt", DATA)
    store.ensure(entry("m", pinned(bad, mirrors=[good])))
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_with_status_200_is_rejected(server, store, store_root, content_type):
    url = server.html("/login.ckpt", content_type)
    with pytest.raises(NotAFileError) as err:
        store.ensure(entry("m", {"filename": "model.ckpt", "url": url}))
    assert "HTML" in err.value.message and "models import" in err.value.hint
    assert files_under(store_root) == set()


def test_html_page_then_mirror(server, store, store_root):
    page = server.html("/quota.ckpt")
    good = server.file("/good.ckpt", DATA)
    store.ensure(entry("m", pinned(page, mirrors=[good])))
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA


def test_small_config_file_passes_the_html_sniffer(server, store, store_root):
    cfg = b"<!-- not html --> model:\n  dim: 8\n"
    url = server.file("/c.yaml", cfg, content_type="text/yaml")
    store.ensure(entry("m", {"filename": "config.yaml", "kind": "config", "url": url}))
    assert (store_root / "m" / "config.yaml").read_bytes() == cfg


def test_slow_server_times_out(server, store_root):
    url = server.stall("/hang.ckpt", 30)
    settings = DownloadSettings(retries=1, backoff=0.01, read_timeout=0.3, connect_timeout=2)
    t0 = time.monotonic()
    with ArtifactStore(store_root, settings=settings) as store, pytest.raises(DownloadFailedError) as err:
        store.ensure(entry("m", pinned(url)))
    assert time.monotonic() - t0 < 5
    assert "timed out" in err.value.message and "2 tries" in err.value.message
    assert len(server.hits_for("/hang.ckpt")) == 2
    assert files_under(store_root) == set()


def test_unreachable_host_fails_after_retries(store_root):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = DownloadSettings(retries=2, backoff=0.01)
    with ArtifactStore(store_root, settings=settings) as store, pytest.raises(DownloadFailedError) as err:
        store.ensure(entry("m", pinned(f"http://127.0.0.1:{port}/x.ckpt")))
    assert "cannot connect" in err.value.message and "3 tries" in err.value.message
    assert files_under(store_root) == set()


def test_an_unreachable_host_is_not_tried_again_in_the_same_run(server, store_root):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    mirror = server.file("/m.ckpt", DATA)
    settings = DownloadSettings(retries=2, backoff=0.01)
    with ArtifactStore(store_root, settings=settings) as store:
        with pytest.raises(DownloadFailedError):
            store.ensure(entry("m1", pinned(dead + "/a.ckpt")))
        events = Events()
        store.ensure(entry("m2", pinned(dead + "/b.ckpt", mirrors=[mirror])), progress=events)
    starts = [e.url for e in events if e.kind == "start"]
    assert starts == [mirror]  # the dead host was skipped without a single try
    assert any("unreachable earlier in this run" in e.message for e in events if e.kind == "fallback")
    assert (store_root / "m2" / "model.ckpt").read_bytes() == DATA


def test_unpinned_download_records_the_observed_hash_and_warns(server, store, store_root):
    url = server.file("/u.ckpt", DATA)
    events = Events()
    store.ensure(entry("m", {"filename": "model.ckpt", "url": url}), progress=events)
    rec = json.loads((store_root / "m" / ".manifest.json").read_text())["artifacts"]["model.ckpt"]
    assert rec["sha256"] == SHA and rec["pinned"] is False
    [warning] = [e for e in events if e.kind == "warning"]
    assert SHA in warning.message and "no sha256" in warning.message


def test_require_hashes_refuses_unpinned_before_any_request(server, store, store_root):
    url = server.file("/u.ckpt", DATA)
    e = entry("m", pinned(url), {"filename": "config.yaml", "kind": "config", "url": url})
    with pytest.raises(HashRequiredError) as err:
        store.ensure(e, require_hashes=True)
    assert "config.yaml" in err.value.message and "model.ckpt" not in err.value.message
    assert server.hits == [] and files_under(store_root) == set()


def test_disk_space_is_checked_before_starting(server, store, store_root):
    url = server.file("/m.ckpt", DATA)
    with pytest.raises(InsufficientSpaceError) as err:
        store.ensure(entry("m", pinned(url, size_bytes=1 << 60)))
    assert err.value.exit_code == ExitCode.STORE and "MiB" in err.value.message
    assert server.hits == [] and files_under(store_root) == set()


def test_disk_space_is_checked_against_the_announced_length(server, store, store_root):
    def huge(h, n):
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 60))
        h.end_headers()

    url = server.route("/huge.ckpt", huge)
    with pytest.raises(InsufficientSpaceError):
        store.ensure(entry("m", {"filename": "model.ckpt", "url": url}))
    assert files_under(store_root) == set()


def test_proxy_from_the_environment_is_used(server, store, store_root, monkeypatch):
    # The server plays an HTTP proxy: requests for http://models.invalid/... arrive in absolute form.
    server.file("http://models.invalid/p.ckpt", DATA)
    monkeypatch.setenv("HTTP_PROXY", server.base)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    with ArtifactStore(store_root, settings=FAST) as s:
        s.ensure(entry("m", pinned("http://models.invalid/p.ckpt")))
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    assert [h.path for h in server.hits] == ["http://models.invalid/p.ckpt"]


def test_models_sharing_a_filename_do_not_clobber_each_other(server, store, store_root):
    a, b = b"model: {dim: 1}\n", b"model: {dim: 2}\n"
    ua, ub = server.file("/a.yaml", a), server.file("/b.yaml", b)
    store.ensure(entry("model-a", {"filename": "config.yaml", "kind": "config", "url": ua}))
    store.ensure(entry("model-b", {"filename": "config.yaml", "kind": "config", "url": ub}))
    assert (store_root / "model-a" / "config.yaml").read_bytes() == a
    assert (store_root / "model-b" / "config.yaml").read_bytes() == b


def test_pinned_file_already_held_by_another_model_is_reused_without_download(server, store, store_root):
    url = server.file("/shared.ckpt", DATA)
    store.ensure(entry("first", pinned(url)))
    events = Events()
    store.ensure(entry("second", {"filename": "other-name.ckpt", "url": url, "sha256": SHA}), progress=events)
    assert len(server.hits_for("/shared.ckpt")) == 1
    a, b = store_root / "first" / "model.ckpt", store_root / "second" / "other-name.ckpt"
    assert a.stat().st_ino == b.stat().st_ino  # hardlinked, no second copy on disk
    assert any(e.kind == "done" and "reused from first" in e.message for e in events)


def test_stored_file_that_no_longer_matches_is_reported_then_replaced(server, store, store_root):
    url = server.file("/m.ckpt", DATA)
    e = entry("m", pinned(url))
    store.ensure(e)
    path = store_root / "m" / "model.ckpt"
    path.write_bytes(blob(len(DATA), seed=8))  # corrupted behind our back (same size)
    [st] = store.status(e)
    assert st.state is ArtifactState.HASH_MISMATCH and SHA in st.detail
    events = Events()
    store.ensure(e, progress=events)
    assert path.read_bytes() == DATA
    assert any(ev.kind == "warning" and "replacing" in ev.message for ev in events)


def test_status_states(server, store, store_root):
    url = server.file("/m.ckpt", DATA)
    e = entry("m", pinned(url), {"filename": "config.yaml", "kind": "config"},
              {"filename": "extra.bin", "kind": "other", "url": url})
    partial = store_root / "m" / ".partial" / "extra.bin"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:10])
    states = {s.filename: s for s in store.status(e)}
    assert states["model.ckpt"].state is ArtifactState.DOWNLOADABLE and states["model.ckpt"].downloadable
    assert states["config.yaml"].state is ArtifactState.MISSING and not states["config.yaml"].downloadable
    assert states["extra.bin"].state is ArtifactState.PARTIAL and states["extra.bin"].size == 10
    assert server.hits == []  # status never touches the network
