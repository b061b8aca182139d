// The sweep pages: the list of sweeps, and a sweep's page — its trials (a table sortable by any column), the
// objective per trial with the best so far, each parameter against the objective, links to each trial's
// job and a comparison of the top five, the winning spec. Both pages read the API again every 2 s while a
// sweep runs. Charts are uPlot's (as the job pages'); pruned trials are hollow orange rings, complete ones
// filled blue dots. Every value reaches the DOM through textContent (nnforge.js's helpers).
"use strict";

const nnforgeSweeps = (() => {
  const { api, getJson, showError, setupToken, formatValue, cell, statusBadge, logSplits, tick } = nnforge;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 2000;
  const PAGE = 50;
  const TOP = 5;
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  const ENDED = ["complete", "pruned", "failed", "cancelled"];
  const DRAWN = ["complete", "pruned"]; // a running trial's value still moves; a failed one has none
  const STATES = ["complete", "pruned", "running", "queued", "failed", "cancelled"];
  const COLORS = { complete: "#1f77b4", pruned: "#ff7f0e", best: "#2ca02c" };
  const LABEL_CHARS = 14; // a categorical tick (a list, a sub-spec) is cut short; the table has it whole

  const number = (value) => (value === null || value === undefined ? null : Number(value)); // "NaN" arrives as text
  const text = (value) => (typeof value === "string" ? value : JSON.stringify(value));
  // The same value whatever the order of its keys, to find a trial's choice among the space's.
  const canonical = (value) => JSON.stringify(value, (key, v) => (v && typeof v === "object" && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
  // A choice's tick: a sub-spec by its plain fields ({arch: cnn, dropout: 0.1, …} -> "cnn 0.1").
  const choiceLabel = (value) => (value && typeof value === "object" && !Array.isArray(value)
    ? Object.values(value).filter((v) => v === null || typeof v !== "object").join(" ") || text(value) : text(value));
  const short = (value) => (value.length > LABEL_CHARS ? `${value.slice(0, LABEL_CHARS - 1)}…` : value);
  const maximizes = (objective) => objective.direction === "maximize";

  function countsText(counts) {
    return STATES.filter((state) => counts[state]).map((state) => `${counts[state]} ${state}`).join(" · ");
  }

  const ended = (counts) => ENDED.reduce((sum, state) => sum + (counts[state] || 0), 0);

  function bestText(sweep) {
    return sweep.best
      ? `${sweep.objective.metric} ${formatValue(sweep.best.value)} (trial ${sweep.best.number})` : "—";
  }

  // Read now, then every REFRESH_MS for as long as `refresh` answers true (something still runs).
  function poll(refresh) {
    const loop = async () => {
      let again = true;
      try {
        again = await refresh();
        showError("");
      } catch (error) {
        if (error.message === "unauthorized") return;
        showError(error.message);
        if (error.problem && error.problem.status === 404) return; // no such sweep (of yours): nothing to wait for
      }
      if (again) setTimeout(loop, REFRESH_MS);
    };
    loop();
  }

  // --- the list of sweeps --------------------------------------------------------------------------------
  function listPage() {
    setupToken();
    let pages = 1;
    const more = $("sweeps-more");

    function render(sweeps) {
      const body = $("sweeps").tBodies[0];
      body.replaceChildren();
      for (const sweep of sweeps) {
        const row = body.insertRow();
        row.dataset.sweepId = sweep.id;
        const link = row.insertCell().appendChild(document.createElement("a"));
        link.href = `/ui/sweeps/${sweep.id}`;
        link.textContent = sweep.name || sweep.id.slice(0, 8);
        link.title = sweep.id;
        statusBadge(row.insertCell().appendChild(document.createElement("span")), sweep.status);
        cell(row, `${ended(sweep.counts)}/${sweep.trials}`);
        cell(row, countsText(sweep.counts));
        cell(row, bestText(sweep));
        cell(row, new Date(sweep.created_at).toLocaleString());
      }
      $("sweeps-empty").hidden = sweeps.length > 0;
    }

    // Every page shown so far is read again, so a running sweep's counts move on each of them.
    async function refresh() {
      const sweeps = [];
      let cursor = null;
      for (let page = 0; page < pages; page += 1) {
        const query = new URLSearchParams({ limit: String(PAGE), ...(cursor ? { cursor } : {}) });
        const answer = await getJson(`/v1/sweeps?${query}`);
        sweeps.push(...answer.items);
        cursor = answer.next_cursor;
        if (!cursor) break;
      }
      render(sweeps);
      more.hidden = !cursor;
      return sweeps.some((sweep) => !TERMINAL.includes(sweep.status));
    }

    more.addEventListener("click", () => {
      pages += 1;
      refresh().catch((error) => showError(error.message));
    });
    poll(refresh);
  }

  // --- charts --------------------------------------------------------------------------------------------
  // Points only, no line between them: a trial is a point, not a step of a curve.
  function pointsSeries(label, color, hollow) {
    return {
      label, stroke: color, paths: () => null, width: hollow ? 2 : 1,
      points: { show: true, size: hollow ? 9 : 7, width: hollow ? 2 : 1, stroke: color, fill: hollow ? "#fff" : color },
    };
  }

  function newPlot(element, options, data) {
    if (element.sweepPlot) element.sweepPlot.destroy();
    element.replaceChildren();
    const plot = new uPlot({
      width: Math.max(320, element.clientWidth || 480), height: 260, ...options,
    }, data, element);
    element.sweepPlot = plot; // the browser test reads what is drawn
    return plot;
  }

  const yAxis = (objective) => ({ label: objective.metric, size: 60, values: (plot, ticks) => ticks.map(tick) });

  // The objective of each ended trial by its number, and the best so far among the complete ones.
  function drawObjective(element, trials, objective, valueOf) {
    const better = maximizes(objective) ? (a, b) => a > b : (a, b) => a < b;
    const shown = trials.filter((t) => DRAWN.includes(t.state) && Number.isFinite(valueOf(t)));
    const xs = shown.map((t) => t.number);
    const complete = shown.map((t) => (t.state === "complete" ? valueOf(t) : null));
    const pruned = shown.map((t) => (t.state === "pruned" ? valueOf(t) : null));
    let best = null;
    const running = shown.map((t) => {
      if (t.state === "complete" && (best === null || better(valueOf(t), best))) best = valueOf(t);
      return best;
    });
    newPlot(element, {
      scales: { x: { time: false } },
      axes: [{ label: "trial", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, yAxis(objective)],
      series: [
        { label: "trial" },
        pointsSeries("complete", COLORS.complete, false),
        pointsSeries("pruned", COLORS.pruned, true),
        { label: "best so far", stroke: COLORS.best, width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
      ],
    }, [xs, complete, pruned, running]);
    element.dataset.points = String(shown.length);
    element.dataset.pruned = String(pruned.filter((v) => v !== null).length);
    element.dataset.best = best === null ? "" : String(best);
  }

  // A trial's value of one parameter as a position on the x axis: a number as it is (log scale when the
  // space samples it so), a choice as its index, spread a little by the trial's number so equal choices do
  // not hide one another.
  function drawParameter(element, path, space, trials, objective, valueOf) {
    const choices = space && space.choices ? space.choices.map(canonical) : null;
    const spread = (n) => (((n * 0.618) % 1) - 0.5) * 0.3;
    const points = [];
    for (const trial of trials) {
      const y = valueOf(trial);
      if (!DRAWN.includes(trial.state) || !(path in trial.params) || !Number.isFinite(y)) continue;
      const raw = trial.params[path];
      const index = choices ? choices.indexOf(canonical(raw)) : -1;
      const x = choices ? index + spread(trial.number) : Number(raw);
      if (Number.isFinite(x) && (!choices || index >= 0)) points.push({ x, y, state: trial.state });
    }
    const labels = choices ? space.choices.map(choiceLabel) : null;
    points.sort((a, b) => a.x - b.x);
    const xs = points.map((p) => p.x);
    const complete = points.map((p) => (p.state === "complete" ? p.y : null));
    const pruned = points.map((p) => (p.state === "pruned" ? p.y : null));
    const xAxis = choices
      ? { label: path, splits: () => choices.map((_, i) => i), values: (plot, ticks) => ticks.map((i) => short(labels[i] ?? "")) }
      : { label: path, values: (plot, ticks) => ticks.map(tick), ...(space && space.log ? { splits: logSplits, filter: (plot, splits) => splits } : {}) };
    const xScale = choices ? { time: false, range: () => [-0.5, choices.length - 0.5] }
      : { time: false, distr: space && space.log ? 3 : 1 };
    newPlot(element, {
      scales: { x: xScale },
      axes: [xAxis, yAxis(objective)],
      legend: { show: false }, // the caption's key says which mark is which
      series: [{ label: path }, pointsSeries("complete", COLORS.complete, false), pointsSeries("pruned", COLORS.pruned, true)],
    }, [xs, complete, pruned]);
    element.dataset.param = path;
    element.dataset.points = String(points.length);
    element.dataset.pruned = String(points.filter((p) => p.state === "pruned").length);
  }

  // --- a sweep's page ------------------------------------------------------------------------------------
  function sweepPage(sweepId) {
    setupToken();
    const params = new URLSearchParams(location.search);
    let sort = params.get("sort") || "number";
    let sweep = null;
    let trials = [];
    let drawn = "";
    // A trial's value: its objective at its best epoch so far (a pruned trial's too).
    const valueOf = (trial) => number(trial.value);

    function showSweep() {
      $("sweep-name").textContent = sweep.name || sweep.id;
      statusBadge($("sweep-status"), sweep.status);
      const done = ended(sweep.counts);
      $("sweep-progress").value = sweep.trials ? done / sweep.trials : 0;
      $("sweep-counts").textContent = `${done}/${sweep.trials} trials ended · ${countsText(sweep.counts)}`;
      const spec = sweep.spec || {};
      const objective = sweep.objective;
      $("sweep-facts").textContent = [
        `${objective.direction} ${objective.metric}`, `${spec.sampler || "tpe"} sampler`,
        `${spec.pruner || "none"} pruner`, `${sweep.parallel} at a time`,
        ...(spec.seed !== undefined && spec.seed !== null ? [`seed ${spec.seed}`] : []),
      ].join(" · ");
      const best = $("sweep-best");
      best.replaceChildren();
      if (sweep.best) {
        best.append(`best: ${bestText(sweep)}, job `);
        const link = best.appendChild(Object.assign(document.createElement("a"), {
          href: `/ui/jobs/${sweep.best.job_id}`, textContent: sweep.best.job_id.slice(0, 8), title: sweep.best.job_id,
        }));
        link.id = "sweep-best-job";
        const chosen = Object.entries(sweep.best.params)
          .map(([path, value]) => `${path} ${typeof value === "number" ? formatValue(value) : text(value)}`);
        best.append(` · ${chosen.join(" · ")}`);
      }
      $("sweep-best-spec").textContent = sweep.best_spec ? JSON.stringify(sweep.best_spec, null, 2) : "—";
      $("sweep-cancel").hidden = TERMINAL.includes(sweep.status);
      // The top five complete trials, best first, side by side on the compare page.
      const better = maximizes(objective) ? -1 : 1;
      const top = trials.filter((t) => t.state === "complete" && t.job_id && Number.isFinite(valueOf(t)))
        .sort((a, b) => better * (valueOf(a) - valueOf(b))).slice(0, TOP);
      const compare = $("compare-top");
      compare.hidden = top.length < 2;
      compare.textContent = `Compare top ${top.length}`;
      compare.href = `/ui/compare?ids=${top.map((t) => t.job_id).join(",")}`;
    }

    // --- the trials table, sorted by any column (the URL keeps ?sort=-value) ---
    const paths = () => [...new Set([...Object.keys((sweep.spec || {}).space || {}), ...trials.flatMap((t) => Object.keys(t.params))])];
    const keyOf = (trial, key) => {
      if (key === "number") return trial.number;
      if (key === "state") return trial.state;
      if (key === "value") return valueOf(trial);
      if (key === "epochs") return trial.epochs_run ?? null;
      const value = trial.params[key.slice(2)];
      return value === undefined ? null : typeof value === "number" ? value : text(value);
    };

    function sorted() {
      const descending = sort.startsWith("-");
      const key = sort.replace(/^-/, "");
      return [...trials].sort((a, b) => {
        const [x, y] = [keyOf(a, key), keyOf(b, key)];
        const missing = (v) => v === null || (typeof v === "number" && !Number.isFinite(v));
        if (missing(x) || missing(y)) return Number(missing(x)) - Number(missing(y)) || a.number - b.number; // last either way
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return (descending ? -order : order) || a.number - b.number;
      });
    }

    function showTrials() {
      const columns = [["number", "trial"], ["state", "state"], ["value", sweep.objective.metric], ["epochs", "epochs"],
        ...paths().map((path) => [`p:${path}`, path])];
      const head = $("trials").tHead.rows[0];
      head.replaceChildren();
      for (const [key, label] of columns) {
        const th = head.appendChild(document.createElement("th"));
        const button = th.appendChild(Object.assign(document.createElement("button"), { className: "sort", textContent: label }));
        th.dataset.key = key;
        if (sort.replace(/^-/, "") === key) {
          th.setAttribute("aria-sort", sort.startsWith("-") ? "descending" : "ascending");
          button.textContent += sort.startsWith("-") ? " ▼" : " ▲";
        }
        button.addEventListener("click", () => {
          sort = sort === key ? `-${key}` : key;
          params.set("sort", sort);
          history.replaceState(null, "", `?${params}`);
          showTrials();
        });
      }
      head.appendChild(document.createElement("th")).textContent = "job";
      const body = $("trials").tBodies[0];
      body.replaceChildren();
      for (const trial of sorted()) {
        const row = body.insertRow();
        row.dataset.number = String(trial.number);
        row.className = trial.state + (sweep.best && sweep.best.number === trial.number ? " best" : "");
        cell(row, String(trial.number));
        const state = row.insertCell().appendChild(document.createElement("span"));
        statusBadge(state, trial.state);
        const value = valueOf(trial);
        cell(row, value === null ? "—" : formatValue(value), "number");
        cell(row, String(trial.epochs_run ?? 0), "number");
        for (const path of paths()) {
          const raw = trial.params[path];
          const shown = raw === undefined ? "—" : typeof raw === "number" ? formatValue(raw) : text(raw);
          cell(row, shown).title = raw === undefined ? "" : text(raw);
        }
        const jobCell = row.insertCell();
        if (trial.job_id) {
          jobCell.appendChild(Object.assign(document.createElement("a"), {
            href: `/ui/jobs/${trial.job_id}`, textContent: trial.job_id.slice(0, 8), title: trial.job_id,
          }));
        }
      }
    }

    function drawCharts() {
      drawObjective($("chart-objective"), trials, sweep.objective, valueOf);
      const box = $("param-charts");
      box.replaceChildren();
      const space = (sweep.spec || {}).space || {};
      // Every figure is laid out before any is drawn: a chart takes its width from its place in the grid.
      const elements = paths().map((path) => {
        const figure = box.appendChild(document.createElement("figure"));
        figure.append(Object.assign(document.createElement("figcaption"), { textContent: `${path} against ${sweep.objective.metric}` }));
        return [path, figure.appendChild(Object.assign(document.createElement("div"), { className: "chart param" }))];
      });
      for (const [path, element] of elements) drawParameter(element, path, space[path], trials, sweep.objective, valueOf);
    }

    async function refresh() {
      sweep = await getJson(`/v1/sweeps/${sweepId}`);
      // Read after the sweep, so an ended sweep is shown with every trial ended.
      trials = (await getJson(`/v1/sweeps/${sweepId}/trials?sort=number`)).items;
      showSweep();
      const signature = JSON.stringify(trials);
      if (signature !== drawn) {
        drawn = signature;
        showTrials();
        drawCharts();
      }
      const over = TERMINAL.includes(sweep.status);
      document.body.dataset.ended = over ? sweep.status : "";
      return !over;
    }

    $("sweep-cancel").addEventListener("click", async () => {
      if (!window.confirm("Cancel this sweep? Its queued and running trials stop.")) return;
      try {
        await api(`/v1/sweeps/${sweepId}/cancel`, { method: "POST" });
        await refresh(); // the polling goes on while the trials end
      } catch (error) {
        if (error.message !== "unauthorized") showError(error.message);
      }
    });
    poll(refresh);
  }

  return { listPage, sweepPage };
})();
