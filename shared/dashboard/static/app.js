// tuneflow's dashboard. Everything shown comes from the JSON API, called with the key in this page's own
// ?code= (never written into the page by the server). Every value is put into the page as text
// (text nodes, never parsed as HTML): a dataset's content cannot become markup or script.
"use strict";
(() => {
  const KEY = new URLSearchParams(location.search).get("code") || "";
  const API = location.pathname.replace(/\/dashboard\/?$/, "");
  const STATES = ["RECEIVED", "VALIDATING", "REJECTED", "SUBMITTED", "RUNNING", "TRAINED", "FAILED", "REGISTERED",
    "DEPLOYING", "DEPLOYED", "DEPLOY_FAILED", "GATED", "ROLLED_BACK", "RETIRED", "TORN_DOWN", "CANCELED"];
  const SETTLED = new Set(["REJECTED", "FAILED", "DEPLOYED", "DEPLOY_FAILED", "GATED", "ROLLED_BACK", "RETIRED",
    "TORN_DOWN", "CANCELED"]);
  const REFRESH_MS = 5000;
  const view = document.getElementById("view");
  let timer = null;

  // ---------------------------------------------------------------------------------------- helpers
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
      else node.setAttribute(name, String(value));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = { "x-functions-key": KEY, ...(options.headers || {}) };
    const response = await fetch(API + path, { ...options, headers, cache: "no-store" });
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!response.ok) {
      const message = (body && body.error && body.error.message) || text || response.statusText;
      throw new ApiError(response.status, `${response.status}: ${message}`);
    }
    return body;
  }

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const badge = (value) => el("span", { class: `badge s-${value}` }, value);
  const num = (value, digits = 3) => (typeof value === "number" ? +value.toFixed(digits) : "—");
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  function age(iso) {
    if (!iso) return "—";
    const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function duration(seconds) {
    if (seconds < 90) return `${seconds.toFixed(1)} s`;
    if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  // "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1" → "Phi-4-mini-instruct:1"
  function shortModel(uri) {
    const found = /models\/([^/]+)(?:\/versions\/([^/]+))?/.exec(uri || "");
    return found ? (found[2] ? `${found[1]}:${found[2]}` : found[1]) : (uri || "—");
  }

  // A link only to an https address; anything else (javascript:, data:) stays text.
  function safeLink(url, label) {
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "https:") return el("a", { href: parsed.href, rel: "noreferrer noopener", target: "_blank" }, label);
    } catch { /* not a URL: shown as text */ }
    return el("span", { class: "wrap" }, url || "—");
  }

  // A progress bar; its width set through the CSSOM (the CSP allows no inline style attribute).
  function bar(share) {
    const fill = el("span", { "data-share": share.toFixed(0) });
    fill.style.width = `${Math.max(0, Math.min(100, share))}%`;
    return el("div", { class: "bar", title: `${share.toFixed(0)}%` }, fill);
  }

  // ``rows``: the rows, or the tbody a caller keeps to refill
  function table(columns, rows, attrs = {}) {
    return el("table", attrs,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.label)))),
      rows instanceof HTMLTableSectionElement ? rows : el("tbody", {}, rows));
  }

  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function section(title, id, ...body) {
    return el("section", { id }, el("h2", {}, title), ...body);
  }

  function setStatus(text) { document.getElementById("status").textContent = text; }

  function chart(options, data, caption, attrs = {}) {
    const figure = el("figure", { class: "chart", ...attrs });
    const holder = el("div");
    figure.append(holder, el("figcaption", {}, caption));
    requestAnimationFrame(() => {
      const width = Math.max(320, Math.min(1100, (figure.clientWidth || 800) - 10));
      new uPlot({ width, height: 220, ...options }, data, holder);
    });
    return figure;
  }

  function barChart(labels, values, series, caption, attrs) {
    const xs = labels.map((_, i) => i);
    return chart({
      scales: { x: { time: false, range: [-0.5, Math.max(0.5, labels.length - 0.5)] } },
      axes: [{ values: (u, splits) => splits.map((i) => (Number.isInteger(i) ? labels[i] ?? "" : "")), gap: 4 }, {}],
      series: [{}, { label: series, fill: "rgba(9,105,218,0.35)", stroke: "#0969da", points: { show: false },
        paths: uPlot.paths.bars({ size: [0.7, 80] }) }],
      legend: { show: false },
    }, [xs, values], caption, attrs);
  }

  // ---------------------------------------------------------------------------------------- runs
  async function runsView(query) {
    const state = query.get("state") || "";
    const search = query.get("q") || "";
    const stateSelect = el("select", { id: "state-filter", "aria-label": "state" },
      el("option", { value: "" }, "all states"), STATES.map((s) => el("option", { value: s, selected: s === state }, s)));
    const searchBox = el("input", { id: "search", type: "search", placeholder: "dataset contains…", value: search,
      "aria-label": "search datasets" });
    const auto = el("input", { id: "auto-refresh", type: "checkbox", checked: true });
    const body = el("tbody");
    const more = el("button", { id: "more", hidden: true }, "Load more");
    const note = el("p", { class: "muted", id: "runs-note" });
    let cursor = null;

    const apply = () => {
      const next = new URLSearchParams();
      if (stateSelect.value) next.set("state", stateSelect.value);
      if (searchBox.value.trim()) next.set("q", searchBox.value.trim());
      location.hash = `#/runs${next.toString() ? "?" + next : ""}`;
    };
    stateSelect.addEventListener("change", apply);
    searchBox.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
    searchBox.addEventListener("search", apply);

    function row(run) {
      const open = () => { location.hash = `#/runs/${encodeURIComponent(run.run_id)}`; };
      return el("tr", { class: "link", "data-run-id": run.run_id, on: { click: open } },
        el("td", {}, badge(run.state)),
        el("td", { class: "wrap" }, el("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.dataset)),
        el("td", { title: run.base_model }, shortModel(run.base_model)),
        el("td", { class: "wrap" }, run.model || "—"),
        el("td", {}, run.endpoint || "—"),
        el("td", { title: when(run.created_at) }, age(run.created_at)));
    }

    // A filtered page may come back short (the server looks for a bounded time): keep asking until full.
    async function page(from, limit) {
      const found = [];
      let next = from;
      for (let round = 0; round < 20 && found.length < limit; round++) {
        const params = new URLSearchParams({ limit: String(limit - found.length) });
        if (state) params.set("state", state);
        if (search) params.set("q", search);
        if (next) params.set("cursor", next);
        const answer = await api(`/runs?${params}`);
        found.push(...answer.runs);
        next = answer.next_cursor;
        if (!next) break;
      }
      return { runs: found, next };
    }

    async function load(append) {
      const { runs, next } = await page(append ? cursor : null, 50);
      if (!append) body.replaceChildren();
      body.append(...runs.map(row));
      cursor = next;
      more.hidden = !next;
      note.textContent = body.children.length ? `${plural(body.children.length, "run")} shown, newest first`
        : "No runs yet: drop a dataset into the datasets container.";
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    }

    more.addEventListener("click", () => load(true).catch(showError));
    view.replaceChildren(el("h1", {}, "Runs"),
      el("div", { class: "controls" }, stateSelect, searchBox,
        el("label", {}, auto, " auto-refresh")),
      table([{ label: "State" }, { label: "Dataset" }, { label: "Base model" }, { label: "Model" },
        { label: "Endpoint" }, { label: "Age" }], body, { id: "runs" }), note, more);
    await load(false);
    schedule(() => { if (auto.checked && !cursorMoved()) return load(false); return null; });
    function cursorMoved() { return body.children.length > 50; }  // the user paged on: keep what they see
  }

  // ---------------------------------------------------------------------------------------- one run
  async function runView(runId) {
    const id = encodeURIComponent(runId);
    const run = await api(`/runs/${id}`);
    const [report, metrics, events] = await Promise.all([
      api(`/runs/${id}/report`).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      run.job_name ? api(`/runs/${id}/metrics`).catch(() => null) : Promise.resolve(null),
      api(`/runs/${id}/events`),
    ]);
    view.replaceChildren(
      el("p", {}, el("a", { href: "#/runs" }, "← Runs")),
      el("h1", {}, "Run ", el("code", {}, run.run_id), " ", badge(run.state)),
      facts([["dataset", run.dataset], ["base model", run.base_model], ["model", run.model], ["endpoint",
        run.endpoint && `${run.endpoint} / ${run.deployment || "—"}`], ["job", run.job_name],
      ["Azure ML Studio", run.studio_url && safeLink(run.studio_url, "open the job")], ["summary", run.summary],
      ["created", when(run.created_at)], ["updated", when(run.updated_at)],
      ["last error", run.last_error && el("pre", { class: "error" }, run.last_error)]]),
      timelineSection(run), validationSection(report), trainingSection(run, metrics), evaluationSection(run),
      rolloutSection(run), eventsSection(events));
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
    if (!SETTLED.has(run.state)) schedule(() => runView(runId));
  }

  function timelineSection(run) {
    const history = run.history || [];
    const now = Date.now();
    const rows = history.map((t, i) => {
      const start = new Date(t.at).getTime();
      const end = i + 1 < history.length ? new Date(history[i + 1].at).getTime() : (SETTLED.has(t.state) ? start : now);
      return { state: t.state, at: t.at, note: t.note, seconds: Math.max(0, (end - start) / 1000) };
    });
    const total = rows.reduce((sum, r) => sum + r.seconds, 0);
    return section("Timeline", "timeline",
      barChart(rows.map((r) => r.state), rows.map((r) => +r.seconds.toFixed(2)), "seconds",
        `time in each state: ${duration(total)} in all`, { id: "timeline-chart" }),
      table([{ label: "State" }, { label: "Entered" }, { label: "Time in state", num: true }, { label: "Note" }],
        rows.map((r) => el("tr", {}, el("td", {}, badge(r.state)), el("td", {}, when(r.at)),
          el("td", { class: "num" }, duration(r.seconds)), el("td", { class: "wrap" }, r.note || "")))));
  }

  function issueRows(groups) {
    return Object.values(groups || {}).map((g) => el("tr", {},
      el("td", {}, el("code", {}, g.code)), el("td", { class: "wrap" }, g.title), el("td", { class: "num" }, g.count),
      el("td", { class: "wrap" }, (g.examples || []).length ? el("ul", {}, g.examples.map((x) => el("li", {},
        x.line ? el("span", { class: "mono" }, `${x.file || ""} line ${x.line}${x.message_index != null ? `, message ${x.message_index}` : ""}: `) : null,
        x.message))) : "—")));
  }

  function validationSection(report) {
    if (!report) return section("Validation", "validation", el("p", { class: "muted" }, "No validation report yet."));
    const columns = [{ label: "Code" }, { label: "Problem" }, { label: "Rows", num: true }, { label: "Where, with examples" }];
    const errors = issueRows(report.errors);
    const warnings = issueRows(report.warnings);
    const train = (report.files || {}).train;
    const bins = (train && train.tokens && train.tokens.histogram) || [];
    return section("Validation", "validation",
      el("p", { class: report.valid ? "" : "error" }, report.valid ? "Accepted: " : "Rejected: ", report.summary),
      el("h3", {}, `Errors (${plural(errors.length, "code")})`),
      errors.length ? table(columns, errors, { id: "errors" }) : el("p", { class: "muted" }, "none"),
      el("h3", {}, `Warnings (${plural(warnings.length, "code")})`),
      warnings.length ? table(columns, warnings, { id: "warnings" }) : el("p", { class: "muted" }, "none"),
      Object.entries(report.files || {}).map(([split, f]) => facts([[`${split} file`, `${f.name} · ${f.format} · ` +
        `${f.rows} rows (${f.valid_rows} valid) · tokens/row p50 ${f.tokens.p50}, p90 ${f.tokens.p90}, max ${f.tokens.max}`]])),
      bins.length ? barChart(bins.map((b) => `${b[0]}`), bins.map((b) => b[2]), "rows",
        `rows by estimated tokens (train file; bins from ${bins[0][0]} to ${bins[bins.length - 1][1]})`,
        { id: "token-chart" }) : null);
  }

  function trainingSection(run, metrics) {
    const progress = (metrics && metrics.progress) || run.progress;
    const series = (metrics && metrics.series) || {};
    const train = series.train_loss || [];
    const evals = series.eval_loss || [];
    const parts = [];
    if (progress) {
      const share = progress.total_steps ? Math.min(100, (100 * progress.step) / progress.total_steps) : 0;
      parts.push(facts([["step", `${progress.step}${progress.total_steps ? ` of ${progress.total_steps}` : ""}`],
        ["epoch", num(progress.epoch, 2)], ["train loss", num(progress.train_loss, 4)],
        ["eval loss", num(progress.eval_loss, 4)], ["ETA", progress.eta_seconds != null ? duration(progress.eta_seconds) : null]]),
      bar(share));
    }
    if (train.length) {
      const steps = [...new Set([...train, ...evals].map((p) => p.step))].sort((a, b) => a - b);
      const at = (points) => { const m = new Map(points.map((p) => [p.step, p.value])); return steps.map((s) => m.get(s) ?? null); };
      parts.push(chart({
        scales: { x: { time: false } }, axes: [{ label: "step" }, { label: "loss" }],
        series: [{ label: "step" }, { label: "train loss", stroke: "#0969da", width: 2, spanGaps: true },
          { label: "eval loss", stroke: "#cf222e", width: 2, spanGaps: true, points: { show: true, size: 6 } }],
      }, [steps, at(train), at(evals)], `${train.length} training steps logged (steps ${train[0].step}–${train[train.length - 1].step})` +
        `; ${evals.length} evaluations`, { id: "loss-chart", "data-steps": train.map((p) => p.step).join(",") }));
    } else {
      parts.push(el("p", { class: "muted" }, run.job_name ? "No training metrics yet." : "No training job."));
    }
    return section("Training", "training", parts);
  }

  const METRICS = [["token_f1", "token F1"], ["rouge_l", "ROUGE-L"], ["exact_match", "exact match"],
    ["length_ratio", "length ratio"], ["error_rate", "error rate"], ["latency_p50_ms", "latency p50 (ms)"],
    ["latency_p95_ms", "latency p95 (ms)"], ["answered", "answered"], ["examples", "examples"]];

  function evaluationSection(run) {
    const evaluation = run.evaluation;
    if (!evaluation || !evaluation.scores) {
      return section("Evaluation", "evaluation", el("p", { class: "muted" }, "Not evaluated (yet)."));
    }
    const roles = ["candidate", "serving", "base"].filter((r) => evaluation.scores[r]);
    const verdict = evaluation.verdict || {};
    const rows = METRICS.map(([key, label]) => el("tr", { "data-metric": key }, el("td", {}, label),
      roles.map((r) => el("td", { class: "num" }, num(evaluation.scores[r][key], 4)))));
    const samples = evaluation.samples || [];
    return section("Evaluation", "evaluation",
      el("p", {}, el("span", { class: `badge s-${verdict.promote ? "promote" : "gated"}` }, verdict.promote ? "promoted" : "gated"),
        " ", verdict.reason || "", verdict.rule ? ` (rule: ${verdict.rule})` : ""),
      table([{ label: "Metric" }, ...roles.map((r) => ({ label: r, num: true }))], rows, { id: "evaluation-table" }),
      samples.length ? el("h3", {}, "Sample answers") : null,
      samples.length ? table([{ label: "Prompt" }, { label: "Reference" }, ...roles.map((r) => ({ label: r }))],
        samples.map((s) => el("tr", {}, el("td", { class: "wrap" }, s.prompt), el("td", { class: "wrap" }, s.reference),
          roles.map((r) => el("td", { class: "wrap" }, s[r] ?? "—")))), { id: "samples" }) : null);
  }

  function rolloutSection(run) {
    const rollout = run.rollout;
    if (!rollout) {
      const text = run.state === "DEPLOYED" || run.state === "RETIRED" ? "Switched at once (no progressive rollout)."
        : "No rollout.";
      return section("Rollout", "rollout", el("p", { class: "muted" }, text));
    }
    const history = rollout.history || [];
    const share = Number(rollout.share || 0);
    return section("Rollout", "rollout",
      facts([["strategy", rollout.strategy], ["serving before", rollout.serving], ["candidate's share", `${share}%`],
        ["since", rollout.since && when(rollout.since)], ["rolled back", rollout.reason]]),
      bar(share),
      history.length ? table([{ label: "Step" }, { label: "Share", num: true }, { label: "Outcome" },
        { label: "Candidate calls / errors", num: true }, { label: "Serving calls / errors", num: true }, { label: "Until" }],
      history.map((h) => el("tr", {}, el("td", {}, h.step ?? "—"), el("td", { class: "num" }, `${h.share ?? "—"}%`),
        el("td", {}, h.outcome || "—"),
        el("td", { class: "num" }, `${(h.candidate || {}).requests ?? "—"} / ${(h.candidate || {}).errors ?? "—"}`),
        el("td", { class: "num" }, `${(h.serving || {}).requests ?? "—"} / ${(h.serving || {}).errors ?? "—"}`),
        el("td", {}, when(h.until)))), { id: "rollout-history" }) : null);
  }

  function eventsSection(answer) {
    const events = (answer && answer.events) || [];
    return section("Events", "events",
      el("p", { class: "muted" }, answer.topic ? "CloudEvents published to the Event Grid topic." :
        "No Event Grid topic is configured: these events are not published."),
      table([{ label: "Id" }, { label: "Type" }, { label: "Time" }, { label: "Delivery" }],
        events.map((e) => el("tr", {}, el("td", { class: "mono" }, e.id), el("td", { class: "mono" }, e.type),
          el("td", {}, when(e.time)), el("td", {}, badge(e.delivery))))));
  }

  // ---------------------------------------------------------------------------------------- endpoints
  async function endpointsView() {
    await refreshEndpoints();
    schedule(refreshEndpoints);
  }

  async function refreshEndpoints() {
    const answer = await api("/endpoints");
    const result = view.querySelector("#teardown-result") || el("div", { id: "teardown-result", role: "alert" });
    const cards = answer.endpoints.map(endpointCard);
    view.replaceChildren(el("h1", {}, "Endpoints"), result,
      ...(cards.length ? cards : [el("p", { class: "muted" }, "No managed online endpoint exists.")]));
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  }

  function endpointCard(endpoint) {
    const mirror = endpoint.mirror || {};
    const rows = (endpoint.deployments || []).map((d) => el("tr", { "data-deployment": d.name },
      el("td", { class: "mono" }, d.name), el("td", { class: "wrap" }, d.model || "—"), el("td", {}, badge(d.state)),
      el("td", { class: "num" }, `${d.traffic}%`), el("td", { class: "num" }, mirror[d.name] ? `${mirror[d.name]}%` : "—")));
    const button = el("button", { class: "danger", "data-endpoint": endpoint.endpoint,
      on: { click: () => askTeardown(endpoint.endpoint) } }, "Tear down…");
    const deadline = endpoint.idle_teardown_at;
    return el("div", { class: "card", "data-endpoint": endpoint.endpoint },
      el("h2", {}, el("span", { class: "mono" }, endpoint.endpoint), badge(endpoint.state), button),
      facts([["last scoring call", endpoint.last_scored ? `${when(endpoint.last_scored)} (${age(endpoint.last_scored)})` : "none recorded"],
        ["idle teardown", endpoint.idle_teardown_minutes ? (deadline ? `at ${when(deadline)} (after ${endpoint.idle_teardown_minutes} idle min)`
          : `after ${endpoint.idle_teardown_minutes} idle min`) : "off"],
        ["pending deletions", (endpoint.pending_deletions || []).join(", ")]]),
      table([{ label: "Deployment" }, { label: "Model" }, { label: "State" }, { label: "Traffic", num: true },
        { label: "Mirror", num: true }], rows));
  }

  function askTeardown(name) {
    const dialog = document.getElementById("teardown-dialog");
    const input = document.getElementById("teardown-key");
    document.getElementById("teardown-name").textContent = name;
    input.value = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "confirm") return;
      const result = document.getElementById("teardown-result");
      const key = input.value;
      input.value = "";
      // Without a key the call goes with this page's function key alone, and the app refuses it.
      const headers = key ? { "x-functions-key": key, "x-tuneflow-teardown-key": key } : {};
      try {
        const answer = await api(`/endpoints/${encodeURIComponent(name)}`, { method: "DELETE", headers });
        result.replaceChildren(el("p", { class: "notice", id: "teardown-outcome", "data-outcome": "accepted" },
          `Teardown of ${name} accepted: ${answer.state || "deleting"}.`));
        refreshEndpoints().catch(showError);
      } catch (e) {
        result.replaceChildren(el("p", { class: "error", id: "teardown-outcome", "data-outcome": "refused" },
          e.status === 401 || e.status === 403 ? `Refused: this key does not allow teardown (${e.message})` : e.message));
      }
    };
    dialog.showModal();
    input.focus();
  }

  // ---------------------------------------------------------------------------------------- routing
  function schedule(refresh) {
    clearInterval(timer);
    timer = setInterval(() => {
      if (document.hidden) return;
      Promise.resolve(refresh()).catch(showError);
    }, REFRESH_MS);
  }

  function showError(error) {
    setStatus("");
    const text = error.status === 401 ? "The API refused this page's key: open the dashboard with ?code=<function key>."
      : `Could not load: ${error.message}`;
    view.replaceChildren(el("p", { class: "error", id: "load-error" }, text));
  }

  function route() {
    clearInterval(timer);
    const hash = location.hash || "#/runs";
    const [path, query] = hash.slice(1).split("?");
    const parts = path.split("/").filter(Boolean);
    for (const link of document.querySelectorAll("header nav a")) {
      link.classList.toggle("active", link.getAttribute("href") === `#/${parts[0] || "runs"}`);
    }
    let shown;
    if (parts[0] === "endpoints") shown = endpointsView();
    else if (parts[0] === "runs" && parts[1]) shown = runView(decodeURIComponent(parts[1]));
    else shown = runsView(new URLSearchParams(query || ""));
    shown.catch(showError);
  }

  window.addEventListener("hashchange", route);
  if (!KEY) {
    view.replaceChildren(el("p", { class: "error", id: "load-error" },
      "Open the dashboard with its key: …/api/dashboard?code=<function key>."));
  } else {
    route();
  }
})();
