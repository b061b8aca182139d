// The dashboard's script: no build step, no framework. Every value reaches the DOM through textContent,
// never innerHTML, so a job name cannot inject markup. The API token lives in localStorage.
"use strict";

const nnforge = (() => {
  const TOKEN_KEY = "nnforge.token";
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const $ = (id) => document.getElementById(id);

  // --- token and API -------------------------------------------------------------------------------------
  const token = () => localStorage.getItem(TOKEN_KEY) || "";

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function authHeaders(extra = {}) {
    return token() ? { ...extra, Authorization: `Bearer ${token()}` } : extra;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    if (response.status === 401) {
      showError("The service needs an API token: paste it above (nnforge token create, or .nnforge/token).");
      throw new Error("unauthorized");
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      const error = new Error(problem.detail || `${response.status} ${response.statusText}`);
      error.problem = problem;
      throw error;
    }
    return response;
  }

  const getJson = async (path) => (await api(path)).json();

  function setupToken() {
    const state = $("token-state");
    state.textContent = token() ? "token saved" : "no token";
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (value) localStorage.setItem(TOKEN_KEY, value);
      else localStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
  }

  // --- server-sent events over fetch (EventSource cannot send Authorization) ---------------------------
  // Calls onEvent(name, data) for each event and resumes from the last event id when the connection drops.
  async function streamEvents(jobId, onEvent, signal) {
    let lastId = null;
    let retryMs = 2000;
    for (;;) {
      try {
        const headers = lastId ? { "Last-Event-ID": lastId } : {};
        const response = await api(`/v1/jobs/${jobId}/events`, { headers, signal });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let event = { name: "message", data: [] };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let newline;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, newline).replace(/\r$/, "");
            buffer = buffer.slice(newline + 1);
            if (line === "") {
              if (event.data.length) {
                onEvent(event.name, JSON.parse(event.data.join("\n")));
                if (event.name === "end") return;
              }
              event = { name: "message", data: [] };
              continue;
            }
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.name = text;
            else if (field === "data") event.data.push(text);
            else if (field === "id") lastId = text;
            else if (field === "retry") retryMs = Number(text) || retryMs;
          }
        }
      } catch (error) {
        if (signal && signal.aborted) return;
        if (error.message === "unauthorized" || error.problem) { showError(error.message); return; }
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  // --- charts ----------------------------------------------------------------------------------------------
  // A uPlot chart over named series of (x, y) points; x values need not line up across series.
  class Chart {
    constructor(element, xLabel) {
      this.element = element;
      this.xLabel = xLabel;
      this.series = new Map(); // name -> Map(x -> y)
      this.plot = null;
      this.pending = false;
    }

    add(name, x, y) {
      if (!this.series.has(name)) this.series.set(name, new Map());
      this.series.get(name).set(x, y);
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => { this.pending = false; this.draw(); });
      }
    }

    points() {
      let count = 0;
      for (const values of this.series.values()) count += values.size;
      return count;
    }

    draw() {
      const names = [...this.series.keys()].sort();
      const xs = [...new Set(names.flatMap((n) => [...this.series.get(n).keys()]))].sort((a, b) => a - b);
      const data = [xs, ...names.map((n) => xs.map((x) => this.series.get(n).get(x) ?? null))];
      const signature = names.join("|");
      if (!this.plot || this.signature !== signature) {
        if (this.plot) this.plot.destroy();
        this.signature = signature;
        this.plot = new uPlot({
          width: Math.max(320, this.element.clientWidth || 480), height: 260,
          scales: { x: { time: false } },
          // Epochs and steps are whole numbers: no ticks at 1.5.
          axes: [{ label: this.xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, {}],
          series: [{ label: this.xLabel }, ...names.map((n, i) => ({
            label: n, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
            points: { show: xs.length < 60 },
          }))],
        }, data, this.element);
      } else {
        this.plot.setData(data);
      }
      this.element.dataset.points = String(this.points());
    }
  }

  // --- formatting ------------------------------------------------------------------------------------------
  function duration(job) {
    if (!job.started_at) return "";
    const end = job.finished_at ? new Date(job.finished_at) : new Date();
    const seconds = (end - new Date(job.started_at)) / 1000;
    return seconds >= 60 ? `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`
      : `${seconds.toFixed(1)}s`;
  }

  function bestMetric(job) {
    for (const name of ["val_accuracy", "train_accuracy", "val_high_quality_fraction", "val_loss", "train_loss"]) {
      if (name in job.best_metrics) return `${name} ${job.best_metrics[name].toPrecision(4)}`;
    }
    return "";
  }

  const fmt = (metrics) => Object.entries(metrics).sort().map(([k, v]) => `${k} ${v.toPrecision(4)}`).join("  ");

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function statusBadge(element, status) {
    element.textContent = status;
    element.className = `status ${status}`;
  }

  // --- jobs page -------------------------------------------------------------------------------------------
  function jobsPage() {
    setupToken();
    const selected = new Set();
    const compare = $("compare-selected");
    compare.addEventListener("click", () => { location.href = `/ui/compare?ids=${[...selected].join(",")}`; });

    async function refresh() {
      try {
        const page = await getJson("/v1/jobs?limit=100");
        const body = $("jobs").tBodies[0];
        body.replaceChildren();
        for (const job of page.items) {
          const row = body.insertRow();
          row.dataset.jobId = job.id;
          const box = document.createElement("input");
          box.type = "checkbox";
          box.checked = selected.has(job.id);
          box.addEventListener("change", () => {
            box.checked ? selected.add(job.id) : selected.delete(job.id);
            compare.disabled = selected.size < 2;
          });
          row.insertCell().append(box);
          const link = document.createElement("a");
          link.href = `/ui/jobs/${job.id}`;
          link.textContent = job.name || job.id.slice(0, 8);
          row.insertCell().append(link);
          statusBadge(cell(row, ""), job.status);
          cell(row, job.arch);
          cell(row, job.spec.optimizer.name);
          cell(row, String(job.spec.optimizer.lr));
          cell(row, `${job.progress.epoch}/${job.progress.total_epochs}`);
          cell(row, bestMetric(job));
          cell(row, duration(job));
          cell(row, new Date(job.created_at).toLocaleString());
        }
        showError("");
      } catch (error) {
        if (error.message !== "unauthorized") showError(error.message);
      }
    }
    refresh();
    setInterval(refresh, 2000);
  }

  // --- job page --------------------------------------------------------------------------------------------
  function jobPage(jobId) {
    setupToken();
    const charts = {
      loss: new Chart($("chart-loss"), "epoch"),
      quality: new Chart($("chart-quality"), "epoch"),
      steps: new Chart($("chart-steps"), "step"),
    };
    let job = null;
    let checkpointEpoch = -1;
    let logAfter = 0;
    let samplesAsked = 0;
    let samplesDrawn = 0;
    let samplesNone = false;

    function showJob(data) {
      job = data;
      $("job-name").textContent = job.name || job.id;
      statusBadge($("job-status"), job.status);
      $("job-facts").textContent = `${job.arch} · ${job.num_parameters.toLocaleString()} parameters · `
        + `${job.spec.optimizer.name} lr ${job.spec.optimizer.lr} · attempt ${job.attempt} · ${duration(job)}`;
      $("job-spec").textContent = JSON.stringify(job.spec, null, 2);
      $("cancel").hidden = TERMINAL.includes(job.status);
      const error = $("job-error");
      error.hidden = !job.error;
      error.textContent = job.error ? `${job.error.type}: ${job.error.message}` : "";
      showProgress(job);
    }

    function showProgress(data) {
      const p = data.progress;
      $("job-progress").value = p.fraction;
      $("job-progress-text").textContent = `epoch ${p.epoch}/${p.total_epochs} · step ${p.step}/${p.total_steps ?? "?"}`;
      $("job-metrics").textContent = fmt(data.latest_metrics);
    }

    function addPoints(points) {
      for (const point of points) {
        const epochLevel = /^(train|val|test)_/.test(point.name);
        if (!epochLevel) charts.steps.add(point.name, point.step, point.value);
        else if (point.name.startsWith("test_")) continue;
        else if (point.name.endsWith("loss")) charts.loss.add(point.name, point.epoch, point.value);
        else charts.quality.add(point.name, point.epoch, point.value);
      }
    }

    async function refreshCheckpoints() {
      const rows = await getJson(`/v1/jobs/${jobId}/checkpoints`);
      const body = $("checkpoints").tBodies[0];
      body.replaceChildren();
      for (const c of rows) {
        const row = body.insertRow();
        cell(row, String(c.id));
        cell(row, String(c.epoch));
        cell(row, String(c.step));
        cell(row, fmt(c.metrics));
        cell(row, `${(c.size / 1024).toFixed(1)} KiB`);
        const buttons = row.insertCell();
        for (const format of ["pt", "safetensors", "onnx"]) {
          const button = document.createElement("button");
          button.textContent = format;
          button.className = "download";
          button.dataset.format = format;
          button.addEventListener("click", () => download(c.id, format, button));
          buttons.append(button);
        }
      }
    }

    // A plain link could not carry the Authorization header: fetch the file, then save it from a blob.
    async function download(checkpointId, format, button) {
      button.disabled = true;
      try {
        const response = await api(`/v1/jobs/${jobId}/checkpoints/${checkpointId}?format=${format}`);
        const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = name ? name[1] : `${jobId}.${format}`;
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      } catch (error) {
        showError(`download failed: ${error.message}`);
      } finally {
        button.disabled = false;
      }
    }

    // Asked once per epoch. The worker writes an epoch's samples with its progress, so a 404 once an epoch
    // has ended means the network generates nothing, and the page stops asking.
    async function refreshSamples(epoch) {
      if (samplesNone || epoch < 1 || epoch <= samplesAsked) return;
      samplesAsked = epoch;
      try {
        const data = await getJson(`/v1/jobs/${jobId}/samples`);
        if (data.epoch <= samplesDrawn) return; // an answer overtaken by a newer one
        samplesDrawn = data.epoch;
        $("samples").hidden = false;
        const count = nnforgeSamples.draw($("samples-canvas"), data);
        $("samples-caption").textContent = data.kind === "points"
          ? `· epoch ${data.epoch} · ${count} generated (red) over ${data.reference.length} real points`
          : `· epoch ${data.epoch} · ${count} images`;
      } catch (error) {
        if (error.problem && error.problem.status === 404) samplesNone = true;
      }
    }

    async function refreshLog() {
      const page = await getJson(`/v1/jobs/${jobId}/logs?after=${logAfter}`);
      logAfter = page.next_after;
      const log = $("job-log");
      for (const line of page.items) log.textContent += `${line.time.slice(11, 19)} ${line.level} ${line.message}\n`;
      if (!TERMINAL.includes(page.status) || page.items.length) setTimeout(refreshLog, 2000);
    }

    $("cancel").addEventListener("click", async () => {
      try { showJob(await (await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" })).json()); }
      catch (error) { showError(error.message); }
    });

    streamEvents(jobId, (name, data) => {
      if (name === "status") { showJob(data); refreshCheckpoints(); refreshSamples(data.progress.epoch); }
      else if (name === "progress") {
        if (job) showProgress(data);
        if (data.progress.epoch !== checkpointEpoch) { checkpointEpoch = data.progress.epoch; refreshCheckpoints(); }
        refreshSamples(data.progress.epoch);
      } else if (name === "metrics") addPoints(data.points);
      else if (name === "end") {
        document.body.dataset.ended = data.status;
        getJson(`/v1/jobs/${jobId}`).then((latest) => { showJob(latest); refreshSamples(latest.progress.epoch); });
        refreshCheckpoints();
      }
    });
    refreshLog().catch((error) => showError(error.message));
  }

  // --- compare page ----------------------------------------------------------------------------------------
  function flatten(value, prefix = "", into = {}) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, child] of Object.entries(value)) flatten(child, prefix ? `${prefix}.${key}` : key, into);
    } else {
      into[prefix] = JSON.stringify(value);
    }
    return into;
  }

  async function comparePage() {
    setupToken();
    const ids = (new URLSearchParams(location.search).get("ids") || "").split(",").filter(Boolean);
    if (!ids.length) return;
    try {
      const jobs = await Promise.all(ids.map((id) => getJson(`/v1/jobs/${id}`)));
      const series = await Promise.all(ids.map((id) => getJson(`/v1/jobs/${id}/metrics`)));
      const names = [...new Set(series.flatMap((s) => Object.keys(s.series)))]
        .filter((n) => /^(train|val)_/.test(n)).sort();
      const select = $("compare-metric");
      for (const name of names) select.add(new Option(name, name, false, name === "val_loss"));
      const label = (job) => job.name || job.id.slice(0, 8);
      let chart = null;
      const draw = () => {
        $("chart-compare").replaceChildren();
        chart = new Chart($("chart-compare"), "epoch");
        jobs.forEach((job, i) => {
          for (const p of series[i].series[select.value] || []) chart.add(label(job), p.epoch, p.value);
        });
        $("compare-caption").textContent = `${select.value} per epoch`;
      };
      select.addEventListener("change", draw);
      draw();

      const flat = jobs.map((job) => flatten(job.spec));
      const keys = [...new Set(flat.flatMap(Object.keys))].sort();
      const table = $("compare-params");
      const head = table.tHead.insertRow();
      cell(head, "parameter");
      jobs.forEach((job) => cell(head, label(job)));
      for (const key of [...keys, "best"]) {
        const row = table.tBodies[0].insertRow();
        const values = key === "best" ? jobs.map(bestMetric) : flat.map((f) => f[key] ?? "");
        cell(row, key);
        const differs = new Set(values).size > 1;
        values.forEach((v) => cell(row, v, differs ? "differs" : ""));
      }
    } catch (error) {
      if (error.message !== "unauthorized") showError(error.message);
    }
  }

  // --- submit page -----------------------------------------------------------------------------------------
  async function submitPage() {
    setupToken();
    const select = $("submit-template");
    const spec = $("submit-spec");
    try {
      const catalog = await getJson("/v1/catalog");
      for (const name of Object.keys(catalog.templates)) select.add(new Option(name, name));
      const show = () => { spec.value = JSON.stringify(catalog.templates[select.value], null, 2); };
      select.addEventListener("change", show);
      show();
    } catch (error) {
      if (error.message !== "unauthorized") showError(error.message);
    }
    $("submit-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const errors = $("submit-errors");
      errors.replaceChildren();
      let body;
      try { body = JSON.parse(spec.value); }
      catch (error) { errors.append(Object.assign(document.createElement("li"), { textContent: `spec: ${error.message}` })); return; }
      if ($("submit-name").value) body.name = $("submit-name").value;
      try {
        const response = await api("/v1/jobs", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        location.href = `/ui/jobs/${(await response.json()).id}`;
      } catch (error) {
        const issues = (error.problem && error.problem.errors) || [{ field: "", reason: error.message }];
        for (const issue of issues) {
          errors.append(Object.assign(document.createElement("li"), { textContent: `${issue.field}: ${issue.reason}` }));
        }
      }
    });
  }

  return { jobsPage, jobPage, comparePage, submitPage, streamEvents, Chart };
})();
