// The jobs page: filters, sorts and pages GET /v1/jobs, edits a job's name, tags and notes (PATCH), deletes
// a job, and shows the owner's storage (GET /v1/usage). The view lives in the URL's query, whose keys are
// the API's own (tag, name, status, arch, optimizer, sort, limit), so a view can be shared and reloaded.
// One page of at most 100 jobs is fetched at a time, however many there are; the current page is read
// again every 2 s. Every value reaches the DOM through textContent (nnforge.js's helpers).
"use strict";

const nnforgeJobs = (() => {
  const { api, getJson, showError, setupToken, formatValue, objectiveText, duration, cell, statusBadge,
    tagChips } = nnforge;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 2000;
  const USAGE_MS = 30000;
  const MAX_LIMIT = 100;
  const DEFAULT_LIMIT = 50;
  const DEFAULT_SORT = "-created";
  // Filters the URL may carry and the API takes; the form edits the first five.
  const FILTERS = ["name", "status", "arch", "optimizer", "dataset", "created_after", "created_before"];
  const splitTags = (text) => text.split(/[\s,]+/).filter(Boolean);

  // --- the view and the URL ------------------------------------------------------------------------------
  function viewFromUrl() {
    const params = new URLSearchParams(location.search);
    const limit = Math.round(Number(params.get("limit")));
    const view = {
      tags: params.getAll("tag").flatMap(splitTags),
      sort: params.get("sort") || DEFAULT_SORT,
      limit: limit >= 1 ? Math.min(limit, MAX_LIMIT) : DEFAULT_LIMIT,
    };
    for (const key of FILTERS) view[key] = params.get(key) || "";
    return view;
  }

  // The API's query for a view; the URL's is the same without the defaults.
  function query(view, { defaults = true } = {}) {
    const params = new URLSearchParams();
    for (const tag of view.tags) params.append("tag", tag);
    for (const key of FILTERS) if (view[key]) params.set(key, view[key]);
    if (defaults || view.sort !== DEFAULT_SORT) params.set("sort", view.sort);
    if (defaults || view.limit !== DEFAULT_LIMIT) params.set("limit", String(view.limit));
    return params;
  }

  // "-best.val_accuracy" -> { key: "best", metric: "val_accuracy", descending: true }
  function parseSort(sort) {
    const descending = sort.startsWith("-");
    const key = sort.replace(/^[-+]/, "");
    if (key.startsWith("best.")) return { key: "best", metric: key.slice(5), descending };
    return { key, metric: "", descending };
  }

  function setOption(select, value) {
    if (value && ![...select.options].some((option) => option.value === value)) select.add(new Option(value, value));
    select.value = value;
  }

  function showView(view) {
    $("filter-tag").value = view.tags.join(" ");
    $("filter-name").value = view.name;
    for (const key of ["status", "arch", "optimizer"]) setOption($(`filter-${key}`), view[key]);
    const sort = parseSort(view.sort);
    setOption($("sort-key"), sort.key);
    $("sort-metric").value = sort.metric;
    $("sort-metric").hidden = sort.key !== "best";
    $("sort-order").value = sort.descending ? "-" : "";
    setOption($("page-size"), String(view.limit));
  }

  function viewFromForm(current) {
    const key = $("sort-key").value;
    const metric = $("sort-metric").value.trim();
    const order = $("sort-order").value;
    return {
      ...current, // the filters the form does not show (dataset, created_*) stay
      tags: splitTags($("filter-tag").value),
      name: $("filter-name").value.trim(),
      status: $("filter-status").value,
      arch: $("filter-arch").value,
      optimizer: $("filter-optimizer").value,
      // Sorting by best waits for a metric to be named.
      sort: key !== "best" ? `${order}${key}` : metric ? `${order}best.${metric}` : current.sort,
      limit: Number($("page-size").value),
    };
  }

  // --- formatting ------------------------------------------------------------------------------------------
  // Decimal units, three significant digits: "12.3 MB", "1 GB".
  function bytes(count) {
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let value = count;
    let unit = 0;
    while (Math.abs(value) >= 999.5 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${Number(value.toPrecision(3))} ${units[unit]}`;
  }

  // The value at the best epoch of the metric sorted by, or else of the job's objective:
  // "val_accuracy 0.825 · epoch 4"; "—" where the job has none.
  function bestText(job, sortMetric) {
    const metric = sortMetric || (job.objective && job.objective.metric);
    if (!metric) return "no objective";
    const values = metric.startsWith("test_") ? job.best_test_metrics : job.best_metrics;
    if (!(metric in values)) return `${metric} —`;
    return `${metric} ${formatValue(values[metric])} · epoch ${job.best_epoch}`;
  }

  const label = (job) => job.name || job.id.slice(0, 8);

  function page() {
    setupToken();
    let view = viewFromUrl();
    let cursors = [null]; // cursors[i] reads page i; cursors[i + 1] is page i's next_cursor
    let index = 0;
    let loaded = 0; // answers older than the latest request are dropped
    let timer = null;
    let items = [];
    const selected = new Set(); // kept across pages and filters
    const compare = $("compare-selected");
    const notice = $("jobs-notice");

    function say(text, isError = false) {
      notice.textContent = text;
      notice.className = isError ? "notice error" : "notice";
      notice.hidden = !text;
    }

    function showSelection() {
      compare.disabled = selected.size < 2;
      compare.textContent = selected.size ? `Compare selected (${selected.size})` : "Compare selected";
    }
    compare.addEventListener("click", () => { location.href = `/ui/compare?ids=${[...selected].join(",")}`; });

    // --- reading one page -------------------------------------------------------------------------------
    async function load() {
      clearTimeout(timer);
      const request = ++loaded;
      const params = query(view);
      if (cursors[index]) params.set("cursor", cursors[index]);
      try {
        const answer = await getJson(`/v1/jobs?${params}`);
        if (request !== loaded) return;
        if (!answer.items.length && index > 0) { index -= 1; load(); return; } // its jobs were deleted
        items = answer.items;
        cursors = [...cursors.slice(0, index + 1), answer.next_cursor];
        render();
        showError("");
      } catch (error) {
        if (request !== loaded) return;
        if (error.message !== "unauthorized") showError(error.message);
      }
      if (request === loaded) schedule();
    }

    // The next read of the current page; none while the tab is hidden.
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(() => (document.hidden ? schedule() : load()), REFRESH_MS);
    }

    function go(to) {
      index = to;
      load();
    }

    function apply(next) {
      const before = query(view).toString();
      view = next;
      const shown = query(view, { defaults: false }).toString();
      history.replaceState(null, "", shown ? `?${shown}` : location.pathname);
      if (query(view).toString() === before) return;
      cursors = [null];
      index = 0;
      say("");
      load();
    }

    function render() {
      const sortMetric = parseSort(view.sort).metric;
      const body = $("jobs").tBodies[0];
      body.replaceChildren();
      for (const job of items) {
        const row = body.insertRow();
        row.dataset.jobId = job.id;
        const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: selected.has(job.id) });
        box.setAttribute("aria-label", `select ${label(job)} to compare`);
        box.addEventListener("change", () => {
          box.checked ? selected.add(job.id) : selected.delete(job.id);
          showSelection();
        });
        row.insertCell().append(box);
        const name = row.insertCell();
        name.className = "job";
        const link = Object.assign(document.createElement("a"), {
          href: `/ui/jobs/${job.id}`, textContent: label(job),
        });
        if (job.notes) link.title = job.notes;
        const chips = Object.assign(document.createElement("span"), { className: "tags" });
        chips.append(...tagChips(job.tags));
        name.append(link, chips);
        statusBadge(cell(row, ""), job.status);
        cell(row, job.arch);
        cell(row, job.spec.optimizer.name);
        cell(row, String(job.spec.optimizer.lr));
        cell(row, `${job.progress.epoch}/${job.progress.total_epochs}`);
        cell(row, bestText(job, sortMetric), "best").title = job.objective
          ? `objective: ${objectiveText(job.objective)}` : "no objective: its latest checkpoint is its best";
        cell(row, duration(job));
        cell(row, new Date(job.created_at).toLocaleString());
        const actions = row.insertCell();
        actions.className = "actions";
        for (const [action, text, run] of [["edit", "Edit", openEdit], ["delete", "Delete", remove]]) {
          const button = Object.assign(document.createElement("button"), { type: "button", textContent: text });
          button.dataset.action = action;
          button.addEventListener("click", () => run(job));
          actions.append(button);
        }
      }
      const first = index * view.limit + 1;
      $("page-info").textContent = items.length
        ? `page ${index + 1} · jobs ${first}–${first + items.length - 1}` : "no jobs match";
      $("page-prev").disabled = index === 0;
      $("page-next").disabled = !cursors[index + 1];
      offerMetrics();
    }

    // The metrics the page's jobs have, offered to sort by.
    function offerMetrics() {
      const list = $("sort-metrics");
      const known = new Set([...list.options].map((option) => option.value));
      for (const job of items) {
        for (const name of [...Object.keys(job.best_metrics), ...Object.keys(job.best_test_metrics)]) {
          if (!known.has(name)) { known.add(name); list.append(new Option(name, name)); }
        }
      }
    }

    // --- the form ------------------------------------------------------------------------------------------
    const form = $("jobs-filters");
    form.addEventListener("submit", (event) => { event.preventDefault(); apply(viewFromForm(view)); });
    for (const id of ["filter-tag", "filter-name", "filter-status", "filter-arch", "filter-optimizer", "sort-metric",
      "sort-order", "page-size"]) {
      $(id).addEventListener("change", () => apply(viewFromForm(view)));
    }
    // Sorting by best starts from the objective of the newest job shown, best first.
    $("sort-key").addEventListener("change", () => {
      const best = $("sort-key").value === "best";
      $("sort-metric").hidden = !best;
      if (best && !$("sort-metric").value) {
        const objective = (items.find((job) => job.objective) || {}).objective || { metric: "val_loss", mode: "min" };
        $("sort-metric").value = objective.metric;
        $("sort-order").value = objective.mode === "max" ? "-" : "";
      }
      apply(viewFromForm(view));
    });
    $("filters-clear").addEventListener("click", () => {
      const cleared = { tags: [], sort: DEFAULT_SORT, limit: view.limit };
      for (const key of FILTERS) cleared[key] = "";
      showView(cleared);
      apply(cleared);
    });
    // A tag chip adds its tag to the filter rather than replacing the view (a middle click opens it alone).
    $("jobs").addEventListener("click", (event) => {
      const chip = event.target.closest("a.tag");
      if (!chip || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      if (!view.tags.includes(chip.textContent)) {
        const next = { ...view, tags: [...view.tags, chip.textContent] };
        showView(next);
        apply(next);
      }
    });
    $("page-prev").addEventListener("click", () => go(Math.max(0, index - 1)));
    $("page-next").addEventListener("click", () => { if (cursors[index + 1]) go(index + 1); });

    // --- editing --------------------------------------------------------------------------------------------
    const dialog = $("edit-dialog");
    let editing = null;

    function clearEditErrors() {
      for (const box of dialog.querySelectorAll(".field-error")) box.textContent = "";
      $("edit-error").textContent = "";
    }

    function openEdit(job) {
      editing = job;
      $("edit-title").textContent = label(job);
      $("edit-name").value = job.name || "";
      $("edit-tags").value = job.tags.join(" ");
      $("edit-notes").value = job.notes || "";
      clearEditErrors();
      dialog.showModal();
    }

    // Only what changed is sent; tags as additions and removals, so a tag another client adds meanwhile stays.
    function changes(job) {
      const body = {};
      const name = $("edit-name").value.trim() || null;
      const notes = $("edit-notes").value.trim() ? $("edit-notes").value : null;
      if (name !== (job.name || null)) body.name = name;
      if (notes !== (job.notes || null)) body.notes = notes;
      const tags = splitTags($("edit-tags").value);
      const added = tags.filter((tag) => !job.tags.includes(tag));
      const removed = job.tags.filter((tag) => !tags.includes(tag));
      if (added.length) body.add_tags = added;
      if (removed.length) body.remove_tags = removed;
      return body;
    }

    // A 422's issues beside their inputs: "add_tags.0 "a b": String should match pattern …".
    function showIssues(error) {
      const issues = (error.problem && error.problem.errors) || [];
      if (!issues.length) { $("edit-error").textContent = error.message; return; }
      for (const issue of issues) {
        const field = issue.field.split(".")[0].replace(/^(add|remove)_/, "");
        const box = dialog.querySelector(`.field-error[data-for="${field}"]`) || $("edit-error");
        const text = typeof issue.value === "string" ? issue.value : "";
        const value = text ? ` "${text.length > 40 ? `${text.slice(0, 40)}…` : text}"` : "";
        box.textContent += `${box.textContent ? "\n" : ""}${issue.field}${value}: ${issue.reason}`;
      }
    }

    $("edit-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearEditErrors();
      const body = changes(editing);
      if (!Object.keys(body).length) { dialog.close(); return; }
      try {
        const response = await api(`/v1/jobs/${editing.id}`, {
          method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        dialog.close();
        say(`Saved ${label(await response.json())}.`);
        load();
      } catch (error) {
        if (error.message !== "unauthorized") showIssues(error);
      }
    });
    $("edit-cancel").addEventListener("click", () => dialog.close());

    // --- deleting -------------------------------------------------------------------------------------------
    async function remove(job) {
      const question = `Delete ${label(job)} (${job.id})? Its checkpoints, metrics, logs and samples go with it.`;
      if (!window.confirm(question)) return;
      try {
        await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
        selected.delete(job.id);
        showSelection();
        say(`Deleted ${label(job)}.`);
        load();
        loadUsage();
      } catch (error) {
        // A queued or running job: the 409 says to cancel it first.
        if (error.message !== "unauthorized") say(error.message, true);
      }
    }

    // --- storage --------------------------------------------------------------------------------------------
    async function loadUsage() {
      try {
        const usage = await getJson("/v1/usage");
        const total = $("storage-total");
        total.textContent = usage.limit_bytes == null ? `Storage: ${bytes(usage.total_bytes)}, no limit`
          : `Storage: ${bytes(usage.total_bytes)} of ${bytes(usage.limit_bytes)}`;
        total.dataset.bytes = String(usage.total_bytes);
        const parts = [["jobs", "jobs"], ["checkpoints", "checkpoints"], ["metrics", "metric rows"],
          ["logs", "log lines"], ["datasets", "uploads"]].filter(([key]) => usage[key].count)
          .map(([key, what]) => `${usage[key].count.toLocaleString()} ${what} ${bytes(usage[key].bytes)}`);
        $("storage-detail").textContent = `· ${usage.owner}${parts.length ? ` · ${parts.join(" · ")}` : ""}`;
      } catch (error) {
        if (error.message !== "unauthorized") $("storage-total").textContent = `Storage: ${error.message}`;
      }
    }

    // --- the catalog's architectures and optimizers, for the filters -----------------------------------------
    async function offerChoices() {
      try {
        const catalog = await getJson("/v1/catalog");
        for (const [key, names] of [["arch", catalog.architectures], ["optimizer", catalog.optimizers]]) {
          const select = $(`filter-${key}`);
          const offered = new Set([...select.options].map((option) => option.value));
          for (const name of Object.keys(names).sort()) if (!offered.has(name)) select.add(new Option(name, name));
          select.value = view[key];
        }
      } catch {
        // The filters still take the URL's values; the list of jobs says what went wrong.
      }
    }

    showView(view);
    showSelection();
    load();
    loadUsage();
    setInterval(loadUsage, USAGE_MS);
    offerChoices();
  }

  return { page, bytes };
})();
