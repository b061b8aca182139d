// The dashboard's script: no build step, no framework. Every value reaches the DOM through textContent,
// never innerHTML, so a job name cannot inject markup. The API token lives in localStorage.
"use strict";

const nnforge = (() => {
  const TOKEN_KEY = "nnforge.token";
  const TERMINAL = ["succeeded", "failed", "cancelled", "pruned"]; // pruned: a sweep's trial stopped early
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

  // --- numbers ---------------------------------------------------------------------------------------------
  // Metric values arrive as numbers, or as the strings "NaN", "Infinity" and "-Infinity" of a diverged run.
  const toNumber = (value) => (typeof value === "number" ? value : Number(value));

  function formatValue(value) {
    if (value === undefined || value === null) return "—";
    const n = toNumber(value);
    if (Number.isNaN(n)) return "NaN";
    if (!Number.isFinite(n)) return n > 0 ? "∞" : "−∞";
    return String(Number(n.toPrecision(4)));
  }

  // Axis ticks stay short however far a diverging loss climbs.
  const tick = (v) => (v == null ? "" : v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5)
    ? String(Number(v.toPrecision(6))) : Number(v.toPrecision(3)).toExponential());

  // Log-scale ticks: whole decades (every few over a wide range), 1-2-5 within a narrow one. uPlot's own put
  // a grid line at every 1…9 of each decade, a grey wall over the 20 decades a diverging loss climbs.
  function logSplits(plot, axis, min, max) {
    const low = Math.floor(Math.log10(min));
    const high = Math.ceil(Math.log10(max));
    const every = Math.max(1, Math.ceil((high - low) / 6));
    const splits = [];
    for (let e = low; e <= high; e += every) {
      for (const m of high - low <= 2 ? [1, 2, 5] : [1]) {
        const v = m * 10 ** e;
        if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) splits.push(v);
      }
    }
    return splits;
  }

  // --- charts ----------------------------------------------------------------------------------------------
  // A uPlot chart over named series of (x, y) points; x values need not line up across series. An x a series
  // lacks is `undefined`, which uPlot spans; a non-finite y (or a non-positive one on a log scale) is `null`,
  // which uPlot leaves as a gap, and the first non-finite x is marked on the plot and named under it.
  // Series are drawn in name order, or in the order they were first added with inOrder (the compare page's
  // runs, coloured as they are listed).
  class Chart {
    constructor(element, xLabel, view = {}, { inOrder = false } = {}) {
      this.element = element;
      this.xLabel = xLabel;
      this.inOrder = inOrder;
      this.view = { log: false, smoothing: 0, ...view };
      this.series = new Map(); // name -> Map(x -> y)
      this.plot = null;
      this.pending = false;
      this.box = element.appendChild(document.createElement("div"));
      this.note = element.appendChild(Object.assign(document.createElement("p"), { className: "chart-note" }));
      element.nnforgeChart = this; // the browser test reads the uPlot instance and the data it draws
    }

    add(name, x, y) {
      if (!this.series.has(name)) this.series.set(name, new Map());
      this.series.get(name).set(x, toNumber(y));
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => { this.pending = false; this.draw(); });
      }
    }

    // view: { log: a log-scale y axis, smoothing: the weight of TensorBoard's debiased moving average (0: off) }
    setView(view) {
      this.view = { ...this.view, ...view };
      if (this.series.size) this.draw();
    }

    points() {
      let count = 0;
      for (const values of this.series.values()) count += values.size;
      return count;
    }

    // The y values drawn for one series at xs, and what was left out of them.
    drawn(name, xs) {
      const points = this.series.get(name);
      const weight = this.view.smoothing;
      const left = { nonFinite: undefined, nonPositive: 0 };
      let mean = 0;
      let count = 0;
      const ys = xs.map((x) => {
        if (!points.has(x)) return undefined;
        let y = points.get(x);
        if (!Number.isFinite(y)) {
          if (left.nonFinite === undefined) left.nonFinite = x;
          return null;
        }
        if (weight > 0) {
          mean = weight * mean + (1 - weight) * y;
          count += 1;
          y = mean / (1 - weight ** count);
        }
        if (this.view.log && y <= 0) { left.nonPositive += 1; return null; }
        return y;
      });
      return { ys, left };
    }

    draw() {
      const names = this.inOrder ? [...this.series.keys()] : [...this.series.keys()].sort();
      const xs = [...new Set(names.flatMap((n) => [...this.series.get(n).keys()]))].sort((a, b) => a - b);
      const drawn = names.map((n) => this.drawn(n, xs));
      const data = [xs, ...drawn.map((d) => d.ys)];
      const starts = drawn.map((d) => d.left.nonFinite).filter((x) => x !== undefined);
      this.nonFiniteFrom = starts.length ? Math.min(...starts) : undefined;
      const signature = `${names.join("|")} ${this.view.log}`;
      if (!this.plot || this.signature !== signature) {
        if (this.plot) this.plot.destroy();
        this.signature = signature;
        this.plot = new uPlot({
          width: Math.max(320, this.element.clientWidth || 480), height: 260,
          scales: { x: { time: false }, y: { distr: this.view.log ? 3 : 1 } },
          // Epochs and steps are whole numbers: no ticks at 1.5.
          axes: [{ label: this.xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, {
            size: 60, values: (plot, ticks) => ticks.map(tick),
            ...(this.view.log ? { splits: logSplits, filter: (plot, splits) => splits } : {}),
          }],
          series: [{ label: this.xLabel }, ...names.map((n, i) => ({
            label: n, stroke: COLORS[i % COLORS.length], width: 1.5,
            points: { show: xs.length < 60 },
          }))],
          hooks: { draw: [(plot) => this.markNonFinite(plot)] },
        }, data, this.box);
        // Long labels are cut short in the legend (the CSS): the whole label shows on hover.
        for (const label of this.plot.root.querySelectorAll(".u-series .u-label")) label.title = label.textContent;
      } else {
        this.plot.setData(data);
      }
      this.element.dataset.points = String(this.points());
      this.element.dataset.scale = this.plot.scales.y.distr === 3 ? "log" : "linear";
      if (this.nonFiniteFrom === undefined) delete this.element.dataset.nonfinite;
      else this.element.dataset.nonfinite = String(this.nonFiniteFrom);
      const notes = names.flatMap((n, i) => (drawn[i].left.nonFinite === undefined ? []
        : [`${n}: non-finite from ${this.xLabel} ${drawn[i].left.nonFinite}`]));
      const hidden = drawn.reduce((sum, d) => sum + d.left.nonPositive, 0);
      if (hidden) notes.push(`${hidden} ${hidden === 1 ? "value" : "values"} ≤ 0 not drawn on the log scale`);
      this.note.textContent = notes.join(" · ");
    }

    // A dashed red line where the first value went non-finite.
    markNonFinite(plot) {
      if (this.nonFiniteFrom === undefined) return;
      const x = Math.round(plot.valToPos(this.nonFiniteFrom, "x", true));
      const { ctx, bbox } = plot;
      ctx.save();
      ctx.strokeStyle = "#c4302b";
      ctx.lineWidth = devicePixelRatio;
      ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      ctx.restore();
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

  const objectiveText = (objective) => (objective
    ? `${objective.metric} (${objective.mode === "max" ? "higher" : "lower"} is better)` : "none");

  const fmt = (metrics) => Object.entries(metrics).sort().map(([k, v]) => `${k} ${formatValue(v)}`).join("  ");

  // Epoch metrics in reading order: train_, val_, test_, then by name.
  const SPLITS = ["train_", "val_", "test_"];
  const splitRank = (name) => { const i = SPLITS.findIndex((s) => name.startsWith(s)); return i < 0 ? 3 : i; };
  const byReadingOrder = (a, b) => splitRank(a) - splitRank(b) || a.localeCompare(b);

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

  // A job's tags as small chips, each a link to the jobs list filtered by it.
  function tagChips(tags) {
    return tags.map((tag) => Object.assign(document.createElement("a"), {
      className: "tag", href: `/ui?tag=${encodeURIComponent(tag)}`, textContent: tag, title: `jobs tagged ${tag}`,
    }));
  }

  // --- job page --------------------------------------------------------------------------------------------
  const isLearningRate = (name) => /^lr(_|$)/.test(name);

  function errorText(error) {
    if (!error) return "";
    // A diverged job's message already opens with "diverged:".
    return error.message.startsWith(`${error.type}:`) ? error.message : `${error.type}: ${error.message}`;
  }

  function jobPage(jobId) {
    setupToken();
    const charts = {
      loss: new Chart($("chart-loss"), "epoch"),
      quality: new Chart($("chart-quality"), "epoch"),
      steps: new Chart($("chart-steps"), "step"),
      lr: new Chart($("chart-lr"), "step"),
    };
    $("steps-log").addEventListener("change", (event) => charts.steps.setView({ log: event.target.checked }));
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
      $("job-tags").replaceChildren(...tagChips(job.tags));
      const sweep = $("job-sweep"); // a sweep's trial links back to its sweep
      sweep.hidden = !job.sweep_id;
      if (job.sweep_id) Object.assign(sweep, { href: `/ui/sweeps/${job.sweep_id}`, textContent: `trial ${job.trial_number} of a sweep` });
      $("job-notes").textContent = job.notes || "";
      $("job-notes").hidden = !job.notes;
      $("job-spec").textContent = JSON.stringify(job.spec, null, 2);
      $("cancel").hidden = TERMINAL.includes(job.status);
      const error = $("job-error");
      error.hidden = !job.error;
      error.textContent = errorText(job.error);
      showProgress(job);
    }

    // A progress event carries the latest and best epoch metrics; the best checkpoint's test metrics come
    // with the job itself (status events and the final read).
    function showProgress(data) {
      const p = data.progress;
      $("job-progress").value = p.fraction;
      $("job-progress-text").textContent = `epoch ${p.epoch}/${p.total_epochs} · step ${p.step}/${p.total_steps ?? "?"}`;
      showScores({ ...job, ...data });
    }

    // The objective, then each epoch metric of the last epoch beside the best epoch's (test_* of the best
    // epoch's weights: the checkpoint `best` downloads).
    function showScores(scores) {
      const objective = scores.objective;
      const best = { ...scores.best_metrics, ...scores.best_test_metrics };
      $("job-objective").textContent = !objective
        ? "objective: none (no quality measure), so the latest checkpoint is the best"
        : `objective: ${objectiveText(objective)} · best epoch `
          + (scores.best_epoch == null ? "none yet" : `${scores.best_epoch}: ${formatValue(best[objective.metric])}`);
      const names = [...new Set([...Object.keys(scores.latest_metrics), ...Object.keys(best)])].sort(byReadingOrder);
      const table = $("job-scores");
      table.hidden = !names.length;
      table.tHead.rows[0].cells[1].textContent = `last epoch (${scores.progress.epoch})`;
      table.tHead.rows[0].cells[2].textContent = `best epoch (${scores.best_epoch ?? "—"})`;
      const body = table.tBodies[0];
      body.replaceChildren();
      for (const name of names) {
        const row = body.insertRow();
        row.dataset.metric = name;
        if (objective && name === objective.metric) row.className = "objective";
        cell(row, objective && name === objective.metric ? `${name} (objective)` : name);
        cell(row, formatValue(scores.latest_metrics[name]));
        cell(row, formatValue(best[name]));
      }
    }

    function addPoints(points) {
      for (const point of points) {
        const epochLevel = /^(train|val|test)_/.test(point.name);
        if (isLearningRate(point.name)) charts.lr.add(point.name, point.step, point.value);
        else if (!epochLevel) charts.steps.add(point.name, point.step, point.value);
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
  // A spec as rows: "optimizer.lr" -> "0.01"; an unset (null) field reads as a field a job lacks, "—".
  function flatten(value, prefix = "", into = {}) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, child] of Object.entries(value)) flatten(child, prefix ? `${prefix}.${key}` : key, into);
    } else {
      into[prefix] = value === null ? "—" : typeof value === "string" ? value : JSON.stringify(value);
    }
    return into;
  }

  // What each job scored: always shown, unlike the hyperparameters, which "only what differs" filters.
  function resultRows(jobs) {
    const rows = [
      ["status", jobs.map((job) => (job.error ? `${job.status} (${job.error.type})` : job.status))],
      ["objective", jobs.map((job) => objectiveText(job.objective))],
      ["best epoch", jobs.map((job) => (job.best_epoch == null ? "—" : String(job.best_epoch)))],
      ["best value", jobs.map((job) => formatValue(job.objective && job.best_metrics[job.objective.metric]))],
    ];
    const tests = [...new Set(jobs.flatMap((job) => Object.keys({ ...job.latest_metrics, ...job.best_test_metrics })))]
      .filter((name) => name.startsWith("test_")).sort();
    for (const name of tests) {
      rows.push([`best checkpoint ${name}`, jobs.map((job) => formatValue(job.best_test_metrics[name]))]);
      rows.push([`last epoch ${name}`, jobs.map((job) => formatValue(job.latest_metrics[name]))]);
    }
    return rows;
  }

  function fillRows(body, rows) {
    for (const [key, values] of rows) {
      const row = body.insertRow();
      row.dataset.key = key;
      const differs = new Set(values).size > 1;
      row.dataset.same = String(!differs);
      cell(row, key, "key");
      for (const value of values) cell(row, value, differs ? "differs" : "").title = value;
    }
  }

  // A column per job: what it scored, then its hyperparameters, by default only those that differ.
  function compareTable(jobs, label) {
    const head = $("compare-params").tHead.insertRow();
    cell(head, "");
    for (const job of jobs) {
      const link = head.appendChild(document.createElement("th")).appendChild(document.createElement("a"));
      link.href = `/ui/jobs/${job.id}`;
      link.textContent = link.title = label(job);
    }
    fillRows($("compare-results"), resultRows(jobs));
    const flat = jobs.map((job) => flatten(job.spec));
    const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
    fillRows($("compare-spec"), keys.map((key) => [key, flat.map((f) => f[key] ?? "—")]));
    const onlyDiffers = $("compare-only-differs");
    const filter = () => {
      for (const row of $("compare-spec").rows) row.hidden = onlyDiffers.checked && row.dataset.same === "true";
    };
    onlyDiffers.addEventListener("change", filter);
    filter();
  }

  // The URL keeps the view (?ids=…&metrics=…&log=1&smoothing=0.6), so a comparison can be shared.
  async function comparePage() {
    setupToken();
    const params = new URLSearchParams(location.search);
    const ids = (params.get("ids") || "").split(",").filter(Boolean);
    if (!ids.length) return;
    try {
      const jobs = await Promise.all(ids.map((id) => getJson(`/v1/jobs/${id}`)));
      // Long per-step series arrive downsampled (each bucket's lowest and highest point, so spikes survive).
      const series = await Promise.all(ids.map((id) => getJson(`/v1/jobs/${id}/metrics?max_points=2000`)));
      // Runs are told apart by name, and by id where names repeat (series of one name would merge).
      const named = jobs.map((job) => job.name || job.id.slice(0, 8));
      const unique = (name) => named.indexOf(name) === named.lastIndexOf(name);
      const labels = new Map(jobs.map((job, i) => [
        job.id, unique(named[i]) ? named[i] : `${named[i]} (${job.id.slice(0, 8)})`]));
      const label = (job) => labels.get(job.id);
      const perEpoch = (name) => /^(train|val)_/.test(name);
      const names = [...new Set(series.flatMap((s) => Object.keys(s.series)))]
        .filter((n) => !n.startsWith("test_"))
        .sort((a, b) => Number(perEpoch(b)) - Number(perEpoch(a)) || byReadingOrder(a, b));
      const asked = (params.get("metrics") || "").split(",").filter((n) => names.includes(n));
      const defaults = [...jobs.map((job) => job.objective && job.objective.metric), "val_loss"]
        .filter((n) => names.includes(n));
      const chosen = new Set(asked.length ? asked : defaults.length ? defaults : names.slice(0, 1));

      const log = $("compare-log");
      const smoothing = $("compare-smoothing");
      log.checked = params.get("log") === "1";
      smoothing.value = params.get("smoothing") || "0";
      const view = () => ({ log: log.checked, smoothing: Number(smoothing.value) });
      let charts = [];

      const remember = () => {
        params.set("metrics", names.filter((name) => chosen.has(name)).join(","));
        params.set("log", log.checked ? "1" : "0");
        params.set("smoothing", smoothing.value);
        const query = [...params].map(([key, value]) => `${key}=${encodeURIComponent(value).replaceAll("%2C", ",")}`);
        history.replaceState(null, "", `?${query.join("&")}`); // commas kept readable
        $("compare-smoothing-value").textContent = Number(smoothing.value) ? smoothing.value : "off";
      };

      const drawCharts = () => {
        const box = $("compare-charts");
        box.replaceChildren();
        charts = names.filter((name) => chosen.has(name)).map((name) => {
          const figure = box.appendChild(document.createElement("figure"));
          const axis = perEpoch(name) ? "epoch" : "step";
          figure.append(Object.assign(document.createElement("figcaption"), { textContent: `${name} per ${axis}` }));
          const element = figure.appendChild(Object.assign(document.createElement("div"), { className: "chart" }));
          element.dataset.metric = name;
          const chart = new Chart(element, axis, view(), { inOrder: true });
          jobs.forEach((job, i) => {
            for (const p of series[i].series[name] || []) {
              chart.add(label(job), perEpoch(name) ? p.epoch : p.step, p.value);
            }
          });
          return chart;
        });
        remember();
      };

      const picker = $("compare-metrics");
      for (const name of names) {
        const box = Object.assign(document.createElement("input"), { type: "checkbox", value: name });
        box.checked = chosen.has(name);
        box.addEventListener("change", () => { box.checked ? chosen.add(name) : chosen.delete(name); drawCharts(); });
        const choice = picker.appendChild(document.createElement("label"));
        choice.append(box, ` ${name}${perEpoch(name) ? "" : " (step)"}`);
      }
      const redraw = () => { for (const chart of charts) chart.setView(view()); remember(); };
      log.addEventListener("change", redraw);
      smoothing.addEventListener("input", redraw);
      drawCharts();

      compareTable(jobs, label);
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
      const from = nnforgeLineage.initFrom(); // the "init from" field (nnforge_lineage.js)
      if (from) body.init_from = { ...(body.init_from || {}), ...from };
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

  return {
    jobPage, comparePage, submitPage, streamEvents, Chart,
    // for the jobs page's own script (nnforge_jobs.js)
    api, getJson, showError, setupToken, formatValue, objectiveText, duration, cell, statusBadge, tagChips,
    logSplits, tick, // the sweep pages' charts (nnforge_sweeps.js)
  };
})();
