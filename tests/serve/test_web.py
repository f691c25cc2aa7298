"""The web page of `stemsep serve --http` in a real browser: headless Chromium (the system's, driven by
Playwright; no browser download) against a real server process with the packaged default model in the
session's DSP env. One server and one browser for the module.

Skips only where no Chromium executable is found, and says so (.ci/run installs Debian's).
STEMSEP_SCREENSHOTS=DIR writes the catalog, a model page and a finished job as PNGs into DIR (docs/img)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import soundfile as sf
from playwright.sync_api import Browser, Page, expect, sync_playwright  # the test extra installs it

from tests.serve.server import Server
from tests.serve.test_http import BROKEN_RECIPE, DEFAULT_MODEL, DSP_RECIPE, serve_env  # noqa: F401  (a fixture)
from tests.support.cli import run_cli, write_user_registry
from tests.worker.conftest import DEMO_MIX


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOTS = os.environ.get("STEMSEP_SCREENSHOTS")
# A DSP model with one file the registry gives no URL for: "import by hand" until `stemsep models import` puts it
# in the store, then "installed".
FILE_MODEL = {"id": "test-file-to-import", "name": "test: a file to import", "architecture": "DSP",
              "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "dsp_center_split"},
              "requirements": {"torch": {"required": False}}, "capabilities": {"stems": ["vocals", "instrumental"]},
              "artifacts": {"primary": {"filename": "weights.bin", "kind": "checkpoint"}}}
# A DSP model whose env needs a package nothing else asks for: its env was never built (nor its lock resolved).
UNBUILT_MODEL = {**FILE_MODEL, "id": "test-env-never-built", "name": "test: an env never built", "artifacts": {},
                 "requirements": {"torch": {"required": False}, "pip": {"packages": ["stemsep-test-never-built==0.0"]}}}


def find_chromium() -> str | None:
    given = os.environ.get("STEMSEP_CHROMIUM")
    if given:
        return given
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH and STEMSEP_CHROMIUM): "
                    "the browser tests need one (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=["--autoplay-policy=no-user-gesture-required"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(serve_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    write_user_registry(Path(serve_env["STEMSEP_HOME"]), "web-models", [FILE_MODEL, UNBUILT_MODEL])
    running = Server(serve_env, cwd=tmp_path_factory.mktemp("web-cwd"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page_link(server: Server) -> str:
    assert server.proc.stdout is not None
    line = server.proc.stdout.readline()  # printed after the token line, like Jupyter's link
    match = re.match(r"page: (\S+)$", line)
    assert match and match.group(1) == f"{server.url}/?token={server.token}", line
    return match.group(1)


@pytest.fixture(scope="module")
def page(browser: Browser, page_link: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    opened = context.new_page()
    opened.goto(page_link)
    expect(opened).to_have_url(re.compile(r"/#?/?$"))  # the token left the address bar
    yield opened
    context.close()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")  # the top of the view, whatever an assertion scrolled to
        page.screenshot(path=str(Path(SCREENSHOTS) / f"web-{name}.png"), full_page=full_page)


def test_the_page_needs_the_link_and_the_api_keeps_its_token(server: Server, page: Page) -> None:
    plain = httpx.Client(base_url=server.url)
    assert plain.get("/").status_code == 401
    assert plain.get("/static/app.js").status_code == 401
    assert plain.get("/?token=wrong-token-of-enough-length").status_code == 401
    assert "set-cookie" not in plain.get("/?token=wrong-token-of-enough-length").headers
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("stemsep_token_"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    with_cookie = httpx.Client(base_url=server.url, cookies={cookie["name"]: cookie["value"]})
    assert with_cookie.get("/static/app.js").status_code == 200
    for outside in ("/static/%2e%2e%2fhttp_app.py", "/static/..%2Fhttp_app.py", "/static/.hidden", "/static/index.py"):
        assert with_cookie.get(outside).status_code == 404, outside
    assert with_cookie.get("/v1/models").status_code == 401  # the API still needs the bearer header
    assert "frame-ancestors 'none'" in with_cookie.get("/").headers["content-security-policy"]


def test_catalog_filters_by_stem(server: Server, page: Page) -> None:
    models = server.http.get("/v1/models").json()["models"]
    with_drums = {m["id"] for m in models if "drums" in m["stems"]}
    assert 0 < len(with_drums) < len(models)
    page.goto(f"{server.url}/#/")
    rows = page.locator("#models tbody tr")
    expect(rows).to_have_count(len(models))
    page.get_by_label("Stem").select_option("drums")
    expect(rows).to_have_count(len(with_drums))
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.model)")) == with_drums
    screenshot(page, "catalog")
    page.get_by_label("Stem").select_option("")
    expect(rows).to_have_count(len(models))


def shown_models(page: Page) -> set[str]:
    return set(page.locator("#models tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)"))


def test_catalog_filters_by_installed_downloadable_import_blocked(server: Server, page: Page,
                                                                 serve_env: dict[str, str],  # noqa: F811
                                                                 tmp_path: Path) -> None:
    def ids(state: str) -> set[str]:
        return {m["id"] for m in server.http.get("/v1/models").json()["models"] if m["state"] == state}

    status = page.get_by_label("Status")
    page.goto(f"{server.url}/#/")
    page.reload()  # the page reads the catalog once per load
    blocked = ids("blocked")
    assert blocked and {m["id"] for m in server.http.get("/v1/models").json()["models"] if m["catalog_only"]} <= blocked
    for state in ("installed", "downloadable", "import", "blocked"):
        status.select_option(state)
        page.wait_for_function("n => document.querySelectorAll('#models tbody tr').length === n", arg=len(ids(state)))
        assert shown_models(page) == ids(state), state
    status.select_option("blocked")
    reason = next(m["blocked_reason"] for m in server.http.get("/v1/models").json()["models"] if m["id"] in blocked)
    expect(page.locator(".badge.err", has_text="blocked").first).to_have_attribute("title", reason)
    status.select_option("import")
    assert FILE_MODEL["id"] in shown_models(page) and FILE_MODEL["id"] not in ids("installed")

    # its page: the file is missing and has no source
    page.goto(f"{server.url}/#/model/{FILE_MODEL['id']}")
    artifact = page.locator('#artifacts tr[data-artifact="weights.bin"]')
    expect(artifact.locator(".badge")).to_have_text("missing: no source")
    expect(artifact).to_contain_text("import by hand")

    # the file arrives in the store (as a user would put it there): the model is installed from the next load on
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(4096))
    proc = run_cli("models", "import", FILE_MODEL["id"], "--checkpoint", weights, env=serve_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page.reload()  # the model page reads the store on each view
    expect(artifact.locator(".badge")).to_have_text("present")
    expect(artifact).to_have_attribute("data-state", "present")
    expect(artifact).to_contain_text("4 KiB")
    expect(artifact.locator("code[title]")).to_have_text(hashlib.sha256(weights.read_bytes()).hexdigest()[:12])
    page.goto(f"{server.url}/#/")
    page.reload()
    status.select_option("installed")
    expect(page.locator(f'#models tr[data-model="{FILE_MODEL["id"]}"]')).to_be_visible()
    assert shown_models(page) == ids("installed") and "test-slow-fault" in shown_models(page)
    row = page.locator(f'#models tr[data-model="{FILE_MODEL["id"]}"]')
    expect(row.locator(".badge", has_text="installed")).to_be_visible()
    status.select_option("import")
    assert FILE_MODEL["id"] not in shown_models(page)
    status.select_option("")


def test_list_badges_runtimes_phase_fix_unsafe_pickle_manual_steps(server: Server, page: Page) -> None:
    """Real registry entries: htdemucs's checkpoints need full unpickling; unwa-hyperace has manual steps (done by
    its runtime); a Phase Fix reference; the preferred runtime among the allowed ones."""
    rows = {m["id"]: m for m in server.http.get("/v1/models").json()["models"]}
    reference = next(m for m in rows.values() if m["phase_fix_reference"])
    page.goto(f"{server.url}/#/")
    page.reload()
    expect(page.locator("#models tbody tr")).to_have_count(len(rows))  # the list is drawn

    def badges(model_id: str) -> list[str]:
        return page.locator(f'#models tr[data-model="{model_id}"] .badge').all_inner_texts()

    assert "unsafe pickle" in badges("htdemucs") and "unsafe pickle" not in badges("unwa-hyperace")
    assert "manual steps automated" in badges("unwa-hyperace")
    assert not [b for b in badges("htdemucs") if b.startswith("manual steps")]
    assert "Phase Fix reference" in badges(reference["id"])
    hyperace = page.locator('#models tr[data-model="unwa-hyperace"]')
    for runtime in rows["unwa-hyperace"]["runtimes"]:
        title = "preferred runtime" if runtime == rows["unwa-hyperace"]["preferred"] else "also allowed"
        expect(hyperace.locator(".badge", has_text=runtime)).to_have_attribute("title", title)
    expect(hyperace.locator(".badge", has_text="downloadable")).to_be_visible()


def test_a_blocked_model_shows_its_reason_and_cannot_start(server: Server, page: Page) -> None:
    blocked = next(m for m in server.http.get("/v1/models").json()["models"] if m["catalog_only"])
    reason = server.http.get(f"/v1/models/{blocked['id']}").json()["explain"]["blocking_reason"]
    assert reason
    page.goto(f"{server.url}/#/model/{blocked['id']}")
    expect(page.locator("#blocked-reason")).to_contain_text(reason)
    expect(page.get_by_role("button", name="Run this model")).to_be_disabled()
    page.goto(f"{server.url}/#/run")
    option = page.locator(f'#model option[value="{blocked["id"]}"]')
    expect(option).to_be_disabled()


def test_a_model_page_shows_its_env_built_or_not(server: Server, page: Page, dsp_env: Any) -> None:
    """The default model runs in the session's DSP env (built); a model needing a package no env has shows "not
    built" with the command that builds it; settings and Phase Fix read as words, not JSON."""
    page.goto(f"{server.url}/#/model/{DEFAULT_MODEL}")
    expect(page.locator("#env-built")).to_have_text("built")
    expect(page.locator("#env")).to_contain_text(dsp_env.id)
    expect(page.locator("#env")).to_contain_text("stemsep-legacy")
    expect(page.locator("#phase-fix")).to_contain_text("Role: not a Phase Fix reference")
    assert not page.locator("#main pre").count()  # no JSON dump left on the page

    page.goto(f"{server.url}/#/model/{UNBUILT_MODEL['id']}")
    expect(page.locator("#env-built")).to_have_text("not built")
    expect(page.locator("#env")).to_contain_text("not resolved yet")
    expect(page.locator("#env code")).to_have_text(f"stemsep setup {UNBUILT_MODEL['id']}")

    page.goto(f"{server.url}/#/model/htdemucs")  # a real entry: settings per runtime in native terms
    overlap = page.locator('[data-settings="audio-separator"] tr', has_text="demucs_params.overlap")
    expect(overlap).to_contain_text("0.5")
    expect(overlap).to_contain_text("ratio: this fraction of each window overlaps the next")
    expect(page.locator('#artifacts tr[data-artifact="955717e8-8726e21a.th"]')).to_contain_text("dl.fbaipublicfiles.com")
    screenshot(page, "model", full_page=True)  # the tables below the fold are what the page is for


def test_upload_preflight_run_listen_download(server: Server, page: Page, serve_env: dict[str, str]) -> None:  # noqa: F811
    page.goto(f"{server.url}/#/run")
    page.locator("#file").set_input_files(str(DEMO_MIX))
    start = page.get_by_role("button", name="Start")
    expect(start).to_be_disabled()  # nothing starts before its preflight
    page.get_by_role("button", name="Check (preflight)").click()
    expect(page.locator("#preflight .verdict")).to_have_text("Preflight passed: ready to start")
    start.click()

    expect(page.locator("#state")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#percent")).to_have_text("100 %")
    bars = page.locator("#main .card progress:not(#overall)")
    assert bars.count() >= 1 and bars.evaluate_all("bs => bs.every(b => b.value === b.max)")
    job_id = page.url.rsplit("/", 1)[-1]
    job = server.job(job_id)
    kinds = [e["type"] for e in server.events(job_id)]
    assert job["state"] == "completed" and "progress" in kinds  # 100 % came from real progress events

    stems = job["result"]["stems"]
    expect(page.locator("[data-stem]")).to_have_count(len(stems))  # each card is added once its stem's bytes came
    assert sorted(stems) == sorted(page.locator("[data-stem]").evaluate_all("els => els.map(e => e.dataset.stem)"))
    for name, path in stems.items():
        card = page.locator(f'[data-stem="{name}"]')
        audio = card.locator("audio")
        page.wait_for_function("a => a.readyState >= 1 && isFinite(a.duration)", arg=audio.element_handle())
        info = sf.info(path)
        assert audio.evaluate("a => a.duration") == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        audio.evaluate("a => a.play()")
        page.wait_for_function("a => !a.paused && a.currentTime > 0", arg=audio.element_handle())
        audio.evaluate("a => a.pause()")
        with page.expect_download() as download:
            card.get_by_role("link", name=f"Download {name}").click()
        assert Path(download.value.path()).read_bytes() == Path(path).read_bytes()
        assert download.value.suggested_filename == name
    screenshot(page, "job")


def test_a_recipe_from_the_page_checks_runs_and_reaches_its_outputs(server: Server, page: Page) -> None:
    """The run form takes a recipe: its graph's verdict before Start (a broken recipe's code and what to do, Start
    stays off), then the job page shows each step as it runs and the recipe's output as a stem."""
    page.goto(f"{server.url}/#/run")
    page.locator("#file").set_input_files(str(DEMO_MIX))
    page.get_by_label("or a recipe").select_option(BROKEN_RECIPE["id"])
    expect(page.get_by_label("Model", exact=True)).to_be_disabled()  # a recipe names its own models
    start = page.get_by_role("button", name="Start")
    page.get_by_role("button", name="Check (preflight)").click()
    expect(page.locator("#preflight .verdict")).to_have_text("Preflight refused: this job cannot start")
    finding = page.locator('#preflight .finding[data-code="E_UNKNOWN_MODEL"]')
    expect(finding).to_contain_text("(step a)")
    expect(finding).to_contain_text("What to do: ")
    expect(start).to_be_disabled()

    page.goto(f"{server.url}/#/")  # the catalog's recipe list links to the form with the recipe chosen
    page.get_by_role("link", name=f"Run recipe {DSP_RECIPE['id']}").click()
    expect(page.get_by_label("or a recipe")).to_have_value(DSP_RECIPE["id"])
    page.locator("#file").set_input_files(str(DEMO_MIX))
    page.get_by_role("button", name="Check (preflight)").click()
    expect(page.locator("#preflight .verdict")).to_have_text("Preflight passed: ready to start")
    expect(page.locator("#recipe-plan")).to_have_text("Steps: a → b → avg; outputs: vocals ← avg.vocals")
    expect(start).to_be_enabled()
    start.click()

    expect(page.locator("#state")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#percent")).to_have_text("100 %")
    steps = page.locator("#steps li[data-step]")
    expect(steps).to_have_count(3)
    assert steps.evaluate_all("ls => ls.map(l => [l.dataset.step, l.dataset.state])") == [
        ["a", "done"], ["b", "done"], ["avg", "done"]]
    expect(page.locator('#steps li[data-output="vocals"]')).to_have_text("output vocals ← avg.vocals")
    job = server.job(page.url.rsplit("/", 1)[-1])
    assert job["spec"]["kind"] == "recipe" and job["state"] == "completed"
    ((name, path),) = job["result"]["stems"].items()
    audio = page.locator(f'[data-stem="{name}"] audio')
    page.wait_for_function("a => a.readyState >= 1 && isFinite(a.duration)", arg=audio.element_handle())
    info = sf.info(path)
    assert audio.evaluate("a => a.duration") == pytest.approx(info.frames / info.samplerate, abs=1e-3)


def test_the_queue_pauses_reorders_cancels_and_resumes(server: Server, page: Page) -> None:
    page.goto(f"{server.url}/#/jobs")
    page.get_by_role("button", name="Pause the queue").click()
    expect(page.get_by_role("button", name="Resume the queue")).to_be_visible()
    assert server.http.get("/v1/health").json()["paused"] is True
    first, second, third = (server.submit(inputs=[str(DEMO_MIX)]) for _ in range(3))
    page.get_by_role("button", name=f"Move {third} up").click()  # the view refreshes by itself
    page.wait_for_function("ids => [...document.querySelectorAll('#jobs-table tbody tr code')]"
                           ".map(c => c.textContent).filter(t => ids.includes(t)).join() === ids.join()",
                           arg=[first, third, second])
    queued = [j["id"] for j in server.http.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]]
    assert queued[-3:] == [first, third, second]
    page.get_by_role("button", name=f"Cancel {first}").click()
    page.get_by_role("button", name="Resume the queue").click()
    assert server.wait_final(third)["state"] == "completed" and server.wait_final(second)["state"] == "completed"
    assert server.job(first)["state"] == "cancelled"
    assert server.job(third)["finished"] <= server.job(second)["started"]


def test_the_page_is_keyboard_reachable(server: Server, page: Page) -> None:
    page.goto(f"{server.url}/#/")
    page.reload()  # a fresh load: focus starts at the top of the document
    expect(page.locator("#models")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")  # skip to content: focus moves into the view, the route stays
    expect(page.locator("#main")).to_be_focused()
    assert page.url.endswith("#/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("searchbox", name="Search")).to_be_focused()
    for name in ("Jobs", "Run", "Catalog"):  # back out of the view through the sections
        page.keyboard.press("Shift+Tab")
        expect(page.get_by_role("link", name=name, exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Jobs", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#main")).to_be_focused()  # the new view takes the focus
