// The page of `stemsep serve --http`: catalog, run, jobs. Plain ES module, no build step, no dependency.
// Every API call carries the bearer token the server put in the page's meta tag (http_page.py says why).
const TOKEN = document.querySelector('meta[name="stemsep-token"]').content;
const FINAL = new Set(["completed", "failed", "cancelled"]);
const main = document.getElementById("main");
let leave = () => {};  // stops the current view's live work (event streams) when the user navigates away

// --- small helpers ---------------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c.nodeType ? c : String(c));
  return el;
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${TOKEN}`, ...(opts.headers || {}) };
  const res = await fetch(path, { ...opts, headers });
  if (!res.ok) {
    let info = null;
    try { info = (await res.json()).error; } catch { /* not JSON */ }
    const err = new Error(info ? info.message : `${res.status} ${res.statusText}`);
    err.info = info;
    throw err;
  }
  return res;
}
const getJSON = async (path) => (await api(path)).json();
const postJSON = async (path, body) => (await api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();

function errorBox(err) {
  const i = err.info || {};
  return h("div", { class: "error-box card", role: "alert" },
    h("strong", {}, i.code ? `${i.code}: ` : "", err.message),
    i.why ? h("div", {}, "Why: ", i.why) : null, i.hint ? h("div", {}, "What to do: ", i.hint) : null);
}

function show(title, ...content) {
  leave(); leave = () => {};
  document.title = `${title} · StemSep`;
  main.replaceChildren(...content.flat().filter((c) => c != null && c !== false));  // as h() takes children
  for (const a of document.querySelectorAll("nav a")) {
    const here = location.hash.split("/")[1] || "";
    const target = a.getAttribute("href").split("/")[1] || "";
    if (target === here || (here === "model" && target === "") || (here === "job" && target === "jobs")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (shown) main.focus();  // after a navigation, not on load: keyboard users land in the new view
  shown = true;
}
let shown = false;

const badge = (text, kind = "", title = null) => h("span", { class: `badge ${kind}`, title }, text);
const fmtBytes = (n) => n == null ? "?" : n < 1 << 20 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;

// --- catalog ---------------------------------------------------------------------------------------------
let catalog = null;
async function loadCatalog() {
  if (!catalog) {
    const [models, recipes] = await Promise.all([getJSON("/v1/models"), getJSON("/v1/recipes")]);
    catalog = { models: models.models, recipes: recipes.recipes };
  }
  return catalog;
}
// a row's state on this machine (envmgr/serve/model_state.py): installed, downloadable, import, blocked
const isBlocked = (m) => m.state === "blocked";
const STATES = {
  installed: ["installed", "ok", "every file it needs is in the model store"],
  downloadable: ["downloadable", "", "its files download on the first run (or stemsep models download)"],
  import: ["import by hand", "warn", "a file has no download URL: stemsep models import"],
  blocked: ["blocked", "err", null],
};

function modelBadges(m) {
  const [label, kind, why] = STATES[m.state] || [m.state || "unknown", "", null];
  const open = m.manual_steps_open;
  return [
    m.default ? badge("default", "ok") : null,
    badge(label, kind, m.state === "blocked" ? m.blocked_reason : why),
    ...m.runtimes.map((r) => badge(r, r === m.preferred ? "ok" : "", r === m.preferred ? "preferred runtime" : "also allowed")),
    m.phase_fix_reference ? badge("Phase Fix reference", "warn", "a reference for Phase Fix recipes") : null,
    m.unsafe_pickle ? badge("unsafe pickle", "warn", "a checkpoint needs full unpickling: runs only with your consent (allow_unsafe_pickle)") : null,
    m.manual_steps ? badge(open ? `manual steps: ${open}` : "manual steps automated", open ? "warn" : "",
      open ? "steps to do by hand before it runs (see the model page)" : "the registry's manual steps are done by the runtime") : null,
  ];
}

async function viewCatalog(params) {
  const { models, recipes } = await loadCatalog();
  const uniq = (f) => [...new Set(models.flatMap(f))].sort();
  const select = (name, label, values) => h("label", {}, label,
    h("select", { name, "aria-label": label }, h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v }, v))));
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "Search", h("input", { name: "q", type: "search", placeholder: "name, id, type…" })),
    select("stem", "Stem", uniq((m) => m.stems)),
    select("role", "Role", uniq((m) => m.roles)),
    select("architecture", "Architecture", uniq((m) => [m.architecture])),
    select("runtime", "Runtime", uniq((m) => m.runtimes)),
    h("label", {}, "Status", h("select", { name: "status", "aria-label": "Status" }, h("option", { value: "" }, "any"),
      h("option", { value: "runnable" }, "runnable (not blocked)"), Object.entries(STATES).map(([v, [text]]) => h("option", { value: v }, text)))));
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  const count = h("p", { class: "muted", role: "status" });
  const body = h("tbody");
  const recipeList = h("ul");
  const table = h("table", { id: "models" },
    h("thead", {}, h("tr", {}, h("th", {}, "Model"), h("th", {}, "Architecture"), h("th", {}, "Stems"), h("th", {}, "State and runtimes"))), body);
  function apply() {
    const f = Object.fromEntries(new FormData(form));
    const q = (f.q || "").toLowerCase();
    const rows = models.filter((m) => (!q || `${m.id} ${m.name} ${m.type} ${m.architecture}`.toLowerCase().includes(q))
      && (!f.stem || m.stems.includes(f.stem)) && (!f.role || m.roles.includes(f.role))
      && (!f.architecture || m.architecture === f.architecture) && (!f.runtime || m.runtimes.includes(f.runtime))
      && (!f.status || (f.status === "runnable" ? !isBlocked(m) : m.state === f.status)));
    body.replaceChildren(...rows.map((m) => h("tr", { "data-model": m.id },
      h("td", {}, h("a", { href: `#/model/${encodeURIComponent(m.id)}` }, m.name), h("div", { class: "muted" }, h("code", {}, m.id))),
      h("td", {}, m.architecture), h("td", {}, m.stems.join(", ")), h("td", {}, modelBadges(m)))));
    const rs = recipes.filter((r) => !q || `${r.id} ${r.name || ""}`.toLowerCase().includes(q));
    recipeList.replaceChildren(...rs.map((r) => h("li", { "data-recipe": r.id }, h("strong", {}, r.name || r.id), " ",
      h("code", {}, r.id), " — ", (r.steps || []).map((s) => `${s.id}: ${s.op}${s.params && s.params.model ? ` (${s.params.model})` : ""}`).join(" → "),
      " ", h("a", { href: `#/run?recipe=${encodeURIComponent(r.id)}` }, "Run", h("span", { class: "sr-only" }, ` recipe ${r.id}`)))));
    count.textContent = `${rows.length} of ${models.length} models, ${rs.length} recipes`;
    const qs = new URLSearchParams(Object.entries(f).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/${qs ? "?" + qs : ""}`);
  }
  form.addEventListener("input", apply);
  apply();
  show("Catalog", h("h1", {}, "Models and recipes"), form, count, table, h("h2", {}, "Recipes"), recipeList);
}

// --- one model -------------------------------------------------------------------------------------------
function list(items) { return items && items.length ? h("ul", {}, items.map((i) => h("li", {}, i))) : h("p", { class: "muted" }, "none"); }

// an artifact's state in the model store (envmgr/artifacts/store.py's ArtifactState) in words
const ARTIFACT_STATES = {
  present: ["present", "ok", "in the model store and matching the registry's pins"],
  downloadable: ["missing: downloads", "", "not in the store yet: it downloads on the first run (or stemsep models download)"],
  missing: ["missing: no source", "warn", "the registry gives no URL: put it in the store with stemsep models import"],
  partial: ["partly downloaded", "warn", "an interrupted download: the next run or stemsep models download resumes it"],
  hash_mismatch: ["wrong file", "err", "its size or sha256 is not the registry's: download it again or import the right file"],
  unsafe: ["unsafe", "err", "a symlink or non-file is where it belongs in the store"],
};

function artifactsView(rows) {
  if (!rows.length) return h("p", { class: "muted", id: "artifacts" }, "No files: nothing to download.");
  return h("table", { id: "artifacts" }, h("thead", {}, h("tr", {}, ["File", "Kind", "Size", "Status", "Source", "sha256"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((a) => {
      const [label, kind, why] = ARTIFACT_STATES[a.state] || [a.state, "", null];
      return h("tr", { "data-artifact": a.filename, "data-state": a.state },
        h("td", {}, h("code", {}, a.filename), a.used_here ? null : h("div", { class: "muted" }, "not used by the runtime it runs on")),
        h("td", {}, a.kind), h("td", {}, a.size_bytes == null ? "unknown" : fmtBytes(a.size_bytes)),
        h("td", {}, badge(label, kind, why), a.detail ? h("div", { class: "muted" }, a.detail) : null),
        h("td", {}, a.source === "import by hand" ? a.source : h("code", {}, a.source), a.stored_from ? h("div", { class: "muted" }, `stored from: ${a.stored_from}`) : null),
        h("td", {}, a.sha256 ? h("code", { title: a.sha256 }, a.sha256.slice(0, 12)) : "—", " ", h("span", { class: "muted" }, a.pinned ? "pinned" : "not pinned")));
    })));
}

function envView(env) {
  if (!env) return h("p", { class: "muted", id: "env" }, "unknown");
  const BUILT = { ready: ["built", "ok"], needs_build: ["not built", "warn"], not_resolved: ["not built", "warn"],
    broken: ["broken", "err"], unknown: ["cannot be built here", "err"], blocked: ["none: blocked", "err"] };
  const [label, kind] = BUILT[env.state] || [env.state, ""];
  const id = env.env_id ? h("code", {}, env.env_id) : env.state === "not_resolved"
    ? h("span", {}, "not resolved yet ", h("span", { class: "muted" }, "(its lock is resolved on the first run or by stemsep setup)")) : "—";
  const torch = env.torch ? [env.torch.version || env.torch.requirement, env.torch.version ? null : ` (backend ${env.torch.backend})`,
    env.torch.cuda ? ` CUDA ${env.torch.cuda}` : null, env.torch.hip ? ` ROCm ${env.torch.hip}` : null, env.torch.version && !env.torch.cuda && !env.torch.hip ? " CPU" : null]
    : "none (no torch in this env)";
  const row = (name, ...value) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, ...value));
  return h("table", { id: "env", class: "facts" }, h("tbody", {},
    row("Runtime", env.runtime || "—"),
    row("Env id", id),
    row("Built", h("span", { id: "env-built" }, badge(label, kind)), env.problem ? h("div", { class: "muted" }, env.problem) : null),
    row("Python", env.python || (env.python_spec ? `${env.python_spec} (when built)` : "—")),
    row("torch", torch),
    env.setup ? row(env.built ? "Rebuild or check" : "Build it", h("code", {}, env.setup)) : null));
}

function settingsView(settings, perRuntime) {
  const recommended = Object.entries(settings.recommended || {});
  const runtimes = Object.entries(perRuntime);
  return h("div", { id: "settings" },
    recommended.length ? h("p", {}, "Recommended: ", recommended.map(([k, v]) => `${k} ${v}`).join(", "),
      settings.overlap_meaning && settings.recommended.overlap != null ? ` (overlap as ${settings.overlap_meaning})` : "")
      : h("p", { class: "muted" }, "None recorded: each runtime uses the model config's own values."),
    settings.notes ? h("p", { class: "muted" }, settings.notes) : null,
    runtimes.map(([runtime, res]) => h("section", { "data-settings": runtime },
      h("h3", {}, "In ", runtime, res.library_version ? ` ${res.library_version}` : ""),
      res.error ? errorBox(Object.assign(new Error(res.error.message), { info: res.error }))
        : !res.rows.length ? h("p", { class: "muted" }, "No setting to pass: the runtime's defaults apply.")
        : h("table", { class: "settings" }, h("thead", {}, h("tr", {}, ["Setting", "Native parameter", "Value", "Meaning / unit", "From"].map((t) => h("th", {}, t)))),
          h("tbody", {}, res.rows.map((r) => h("tr", {}, h("td", {}, r.setting), h("td", {}, h("code", {}, r.param)),
            h("td", {}, r.value == null ? "runtime default" : String(r.value)), h("td", {}, r.meaning || "—"),
            h("td", {}, r.provenance.replace("_", " "), r.note ? h("div", { class: "muted" }, r.note) : null))))))));
}

function phaseFixView(pf, references) {
  const params = Object.entries(pf.recommended_params || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  if (pf.is_valid_reference) {
    return h("div", { id: "phase-fix" }, h("p", {}, "Role: a Phase Fix reference (the phase source for Phase Fix recipes)",
      params ? `; recommended parameters: ${params}` : "", "."), list(pf.recommended_usage));
  }
  return h("div", { id: "phase-fix" }, h("p", {}, "Role: not a Phase Fix reference (do not use it as the phase source).",
    references.length ? ` References in this catalog: ${references.join(", ")}.` : ""));
}

async function viewModel(id) {
  const m = await getJSON(`/v1/models/${encodeURIComponent(id)}`);
  const x = m.explain;
  const blocked = isBlocked(m);
  const runtimes = h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Runtime"), h("th", {}, "Allowed"), h("th", {}, "Library"), h("th", {}, "Why not"))),
    h("tbody", {}, x.runtimes.map((r) => h("tr", {}, h("td", {}, r.runtime, r.preferred ? badge("preferred", "ok") : null),
      h("td", {}, r.allowed ? "yes" : "no"), h("td", {}, r.library_version || r.pin || "—"),
      h("td", {}, r.cannot_run.length ? list(r.cannot_run) : r.allowed ? "" : "not allowed by the registry entry")))));
  const catalogRefs = (await loadCatalog()).models.filter((r) => r.phase_fix_reference).map((r) => r.id);
  const run = h("button", { type: "button", disabled: blocked, "aria-describedby": blocked ? "blocked-reason" : null,
    onclick: () => { location.hash = `#/run?model=${encodeURIComponent(m.id)}`; } }, "Run this model");
  show(m.name,
    h("p", {}, h("a", { href: "#/" }, "← Catalog")),
    h("h1", {}, m.name, " ", h("code", {}, m.id)), h("p", {}, modelBadges(m)),
    x.description ? h("p", {}, x.description) : null,
    blocked ? h("div", { class: "blocked", id: "blocked-reason", role: "note" }, h("strong", {}, "Blocked: "),
      m.blocked_reason || x.blocking_reason || x.default_runtime.explanation || "no runtime can run it") : null,
    h("div", { class: "row" }, run),
    h("h2", {}, "Where it runs"), h("p", {}, x.default_runtime.explanation || ""), runtimes,
    h("h2", {}, "Requirements"), list(x.requirements),
    h("h2", {}, "Manual steps"), list((x.manual_steps || []).map((s) => [s.text, s.how ? h("div", { class: "muted" }, s.how) : null])),
    h("h2", {}, "Phase Fix"), phaseFixView(x.phase_fix, catalogRefs),
    h("h2", {}, "Settings per runtime (native meaning)"), settingsView(x.settings, m.settings || {}),
    h("h2", {}, "Artifacts"), artifactsView(m.artifacts || []),
    h("h2", {}, "Env"), envView(m.env),
    x.known_issues.length ? [h("h2", {}, "Known issues"), list(x.known_issues)] : null);
}

// --- run -------------------------------------------------------------------------------------------------
function reportView(checked) {
  const r = checked.report;
  const findings = [...r.errors, ...r.warnings];
  // a recipe's report (docs/recipes.md) also gives its steps in run order and its outputs
  const graph = r.recipe ? h("p", { class: "muted", id: "recipe-plan" }, "Steps: ", (r.order || []).join(" → "), "; outputs: ",
    Object.entries(r.outputs || {}).map(([name, ref]) => `${name} ← ${ref}`).join(", ")) : null;
  return h("div", { class: "card", id: "preflight" },
    h("p", { class: `verdict ${checked.can_proceed ? "ok" : "err"}`, role: "status" },
      checked.can_proceed ? "Preflight passed: ready to start" : "Preflight refused: this job cannot start"),
    graph,
    findings.map((f) => h("div", { class: `finding ${f.severity}`, "data-code": f.code }, h("strong", {}, f.code),
      f.step ? ` (step ${f.step})` : "", ": ", f.message,
      f.why ? h("div", { class: "muted" }, "Why: ", f.why) : null, f.hint ? h("div", {}, "What to do: ", f.hint) : null)));
}

async function viewRun(params) {
  const { models, recipes } = await loadCatalog();
  let input = null;  // "upload:<id>" or a path, once known
  const file = h("input", { type: "file", id: "file", accept: "audio/*" });
  const drop = h("label", { class: "drop", for: "file" }, "Drop an audio file here, or choose one: ", file);
  const path = h("input", { type: "text", id: "path", size: 50, placeholder: "/absolute/path/on/the/server.flac" });
  const model = h("select", { id: "model" }, h("option", { value: "" }, "the default model"),
    models.map((m) => h("option", { value: m.id, disabled: isBlocked(m) }, `${m.name} (${m.id})${isBlocked(m) ? " — blocked" : ""}`)));
  const recipe = h("select", { id: "recipe" }, h("option", { value: "" }, "none: run the model"),
    recipes.map((r) => h("option", { value: r.id }, `${r.name || r.id} (${r.id})`)));
  if (params.get("model")) model.value = params.get("model");
  if (params.get("recipe")) recipe.value = params.get("recipe");
  const pickRecipe = () => { model.disabled = Boolean(recipe.value); };  // a recipe names its own models
  pickRecipe();
  const out = h("div", { "aria-live": "polite" });
  const start = h("button", { type: "button", id: "start", disabled: true }, "Start");
  const check = h("button", { type: "button", id: "check", class: "secondary" }, "Check (preflight)");
  const spec = () => recipe.value ? { kind: "recipe", recipe: recipe.value, inputs: [input] }
    : { kind: "separate", inputs: [input], models: model.value ? [model.value] : [] };
  const invalidate = () => { start.disabled = true; };
  model.addEventListener("change", invalidate);
  recipe.addEventListener("change", () => { pickRecipe(); invalidate(); }); path.addEventListener("input", () => { input = null; invalidate(); });
  async function upload(f) {
    out.replaceChildren(h("p", { class: "muted" }, `Uploading ${f.name}…`));
    const res = await (await api(`/v1/uploads?filename=${encodeURIComponent(f.name)}`, { method: "POST", body: f })).json();
    input = res.input;
    out.replaceChildren(h("p", {}, `Uploaded ${res.name} (${fmtBytes(res.size)}).`));
  }
  file.addEventListener("change", () => { input = null; invalidate(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); file.files = e.dataTransfer.files; input = null; invalidate(); });
  check.addEventListener("click", async () => {
    try {
      invalidate();
      if (!input) {
        if (file.files.length) await upload(file.files[0]);
        else if (path.value.trim()) input = path.value.trim();
        else throw new Error("choose a file or give a path first");
      }
      const checked = await postJSON("/v1/preflight", spec());
      out.replaceChildren(reportView(checked));
      start.disabled = !checked.can_proceed;
    } catch (err) { out.replaceChildren(errorBox(err)); }
  });
  start.addEventListener("click", async () => {
    try { const job = await postJSON("/v1/jobs", spec()); location.hash = `#/job/${job.id}`; }
    catch (err) { out.append(errorBox(err)); }
  });
  show("Run", h("h1", {}, "Run a model or a recipe"),
    h("div", { class: "card" }, drop, h("div", { class: "field" }, h("label", { for: "path" }, "or a path the server allows"), path)),
    h("div", { class: "card row" }, h("label", { for: "model" }, "Model"), model, h("label", { for: "recipe" }, "or a recipe"), recipe),
    h("div", { class: "row" }, check, start), out);
}

// --- jobs ------------------------------------------------------------------------------------------------
async function viewJobs() {
  const body = h("tbody");
  const pause = h("button", { type: "button", class: "secondary" });
  let paused = false, shownKey = null;
  async function refresh() {
    const data = await getJSON("/v1/jobs");
    const key = JSON.stringify(data);
    if (key === shownKey) return;  // unchanged: keep the rows (and the keyboard focus) as they are
    shownKey = key;
    const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
    paused = data.paused;
    pause.textContent = paused ? "Resume the queue" : "Pause the queue";
    const queued = data.jobs.filter((j) => j.state === "queued").map((j) => j.id);
    const move = (id, by) => async () => {
      const order = [...queued]; const i = order.indexOf(id); const k = i + by;
      if (k < 0 || k >= order.length) return;
      [order[i], order[k]] = [order[k], order[i]];
      await postJSON("/v1/queue/reorder", { job_ids: order }); refresh();
    };
    body.replaceChildren(...data.jobs.map((j) => h("tr", {},
      h("td", {}, h("a", { href: `#/job/${j.id}` }, h("code", {}, j.id))), h("td", {}, j.state),
      h("td", {}, j.spec.recipe ? `recipe ${j.spec.recipe}` : (j.spec.models || []).join(", ") || "default"), h("td", {}, (j.spec.inputs || []).join(", ")),
      h("td", {}, j.state === "queued" ? [h("button", { type: "button", class: "secondary", "aria-label": `Move ${j.id} up`, onclick: move(j.id, -1) }, "↑"), " ",
        h("button", { type: "button", class: "secondary", "aria-label": `Move ${j.id} down`, onclick: move(j.id, 1) }, "↓"), " "] : null,
        FINAL.has(j.state) ? null : h("button", { type: "button", class: "secondary", onclick: async () => { await api(`/v1/jobs/${j.id}`, { method: "DELETE" }); refresh(); }, "aria-label": `Cancel ${j.id}` }, "Cancel")))));
    if (focused) { const again = [...body.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === focused); if (again) again.focus(); }
  }
  pause.addEventListener("click", async () => { await postJSON(paused ? "/v1/queue/resume" : "/v1/queue/pause", {}); refresh(); });
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 2000);
  show("Jobs", h("h1", {}, "Jobs"), h("div", { class: "row" }, pause),
    h("table", { id: "jobs-table" }, h("thead", {}, h("tr", {}, ["Job", "State", "Models", "Inputs", "Actions"].map((t) => h("th", {}, t)))), body));
  leave = () => clearInterval(timer);
}

// Server-Sent Events read with fetch (EventSource cannot send the bearer header); reconnects with
// Last-Event-ID so no event is lost or repeated.
async function follow(jobId, onEvent, signal) {
  let last = 0;
  while (!signal.aborted) {
    try {
      const res = await api(`/v1/jobs/${jobId}/events`, { headers: last ? { "Last-Event-ID": String(last) } : {}, signal });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;  // a keepalive comment
          const event = JSON.parse(data);
          last = event.seq;
          onEvent(event);
          if (FINAL.has(event.type)) return;
        }
      }
    } catch (err) { if (signal.aborted) return; }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function drawWave(canvas, buffer) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width = canvas.clientWidth * devicePixelRatio, hgt = canvas.height = canvas.clientHeight * devicePixelRatio;
  const data = buffer.getChannelData(0), step = Math.max(1, Math.floor(data.length / w));
  ctx.fillStyle = "#1f5fbf";
  for (let x = 0; x < w; x++) {
    let lo = 1, hi = -1;
    for (let i = x * step, end = Math.min(data.length, i + step); i < end; i++) { const v = data[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
    if (hi < lo) continue;
    ctx.fillRect(x, (1 - hi) * hgt / 2, 1, Math.max(1, (hi - lo) * hgt / 2));
  }
}

async function stemView(jobId, name) {
  const blob = await (await api(`/v1/jobs/${jobId}/stems/${encodeURIComponent(name)}`)).blob();
  const url = URL.createObjectURL(blob);
  const canvas = h("canvas", { role: "img", "aria-label": `waveform of ${name}` });
  const el = h("div", { class: "card stem", "data-stem": name }, h("strong", {}, name),
    h("audio", { controls: true, preload: "metadata", src: url, "aria-label": `play ${name}` }),
    canvas, h("div", {}, h("a", { href: url, download: name }, `Download ${name}`), ` (${fmtBytes(blob.size)})`));
  blob.arrayBuffer().then((bytes) => new AudioContext().decodeAudioData(bytes)).then((b) => drawWave(canvas, b)).catch(() => {});
  return el;
}

async function viewJob(jobId) {
  const job = await getJSON(`/v1/jobs/${jobId}`);
  const state = h("strong", { id: "state" }, job.state);
  const overall = h("progress", { id: "overall", max: 100, value: 0, "aria-label": "overall progress" });
  const percent = h("span", { id: "percent", role: "status" }, "0 %");
  const stages = h("div");
  const stageBars = new Map();
  // a recipe job: its steps in run order as they start, then the outputs it wrote (docs/recipes.md's events)
  const steps = h("ol", { id: "steps" });
  const stepItems = new Map();
  let stepAt = null;  // the running step's {index, total}
  const mark = (item, st) => { item.dataset.state = st; item.querySelector(".step-state").textContent = ` — ${st}`; };
  const log = h("pre", { id: "events" });
  const facts = h("pre", { id: "facts" });
  const results = h("div", { id: "stems" });
  const cancel = h("button", { type: "button", class: "secondary", onclick: async () => {
    try { await api(`/v1/jobs/${jobId}`, { method: "DELETE" }); } catch (err) { results.append(errorBox(err)); } } }, "Cancel");
  const debug = {};
  const setPercent = (p) => { overall.value = p; percent.textContent = `${Math.round(p)} %`; };
  const ctl = new AbortController();
  show(`Job ${jobId}`, h("h1", {}, "Job ", h("code", {}, jobId)),
    h("p", {}, "State: ", state, " ", cancel),
    h("div", { class: "card" }, h("div", { class: "row" }, "Overall ", percent), overall, stages),
    job.spec.kind === "recipe" ? [h("h2", {}, "Steps of recipe ", h("code", {}, job.spec.recipe)), steps] : null,
    h("h2", {}, "Stems"), results,
    h("details", {}, h("summary", {}, "Debug facts (env, lock, versions)"), facts),
    h("details", {}, h("summary", {}, "Events"), log));
  leave = () => ctl.abort();
  async function finish(final) {
    state.textContent = final.state; cancel.disabled = true;
    if (final.state === "completed") {
      setPercent(100);
      for (const item of stepItems.values()) mark(item, "done");
    } else for (const item of stepItems.values()) if (item.dataset.state === "running") mark(item, final.state);
    if (final.error) results.append(errorBox(Object.assign(new Error(final.error.message), { info: final.error })));
    for (const name of Object.keys((final.result || {}).stems || {})) results.append(await stemView(jobId, name));
  }
  follow(jobId, async (e) => {
    log.textContent += JSON.stringify(e) + "\n";
    if (e.type === "started") state.textContent = "running";
    if (e.type === "step") {
      for (const item of stepItems.values()) mark(item, "done");
      const item = h("li", { "data-step": e.step }, h("strong", {}, e.step), `: ${e.op}`,
        e.model ? [" (", h("code", {}, e.model), ")"] : null, h("span", { class: "step-state muted" }));
      mark(item, "running");
      stepItems.set(e.step, item); steps.append(item);
      stepAt = { index: e.index, total: e.total };
      setPercent(100 * (e.index - 1) / e.total);
    }
    if (e.type === "output") steps.append(h("li", { class: "muted", "data-output": e.name }, `output ${e.name} ← ${e.from}`));
    if (e.type === "progress" && e.total) {
      const key = e.step ? `${e.step}: ${e.stage}` : e.stage;
      let bar = stageBars.get(key);
      if (!bar) {
        bar = h("progress", { max: 1, value: 0, "aria-label": `${key} progress` });
        stageBars.set(key, bar); stages.append(h("div", { class: "muted" }, key), bar);
      }
      bar.max = e.total; bar.value = e.done;
      // in a recipe, a step's progress is its share of the whole run
      setPercent(stepAt ? 100 * (stepAt.index - 1 + e.done / e.total) / stepAt.total : 100 * e.done / e.total);
    }
    if (["env", "worker", "plan"].includes(e.type)) { debug[e.type] = e; facts.textContent = JSON.stringify(debug, null, 2); }
    if (FINAL.has(e.type)) await finish(await getJSON(`/v1/jobs/${jobId}`));
  }, ctl.signal);
}

// --- routing ---------------------------------------------------------------------------------------------
async function route() {
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const [, view, arg] = (path || "/").split("/");
  try {
    if (view === "model" && arg) await viewModel(decodeURIComponent(arg));
    else if (view === "run") await viewRun(params);
    else if (view === "jobs") await viewJobs();
    else if (view === "job" && arg) await viewJob(arg);
    else await viewCatalog(params);
  } catch (err) { show("Error", errorBox(err)); }
}
let lastPath = null;
window.addEventListener("hashchange", () => {
  const path = location.hash.split("?")[0];
  if (path === lastPath && (path === "#/" || path === "")) return;  // the catalog rewrote its own filters
  lastPath = path; route();
});
lastPath = location.hash.split("?")[0];
// the skip link moves focus without touching the hash (the hash is the router's)
document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
route();
getJSON("/v1/health").then((x) => { document.getElementById("health").textContent = `queue: ${x.queued} queued, ${x.running} running${x.paused ? ", paused" : ""}`; }).catch(() => {});
