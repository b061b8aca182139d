// Lineage on the dashboard: the job page's chain of ancestors and its descendants (GET /v1/jobs/{id}/lineage),
// each a link, and the submit page's "init from" field (init_from: JOB[:best|latest|ID], load, freeze).
// Values reach the DOM through textContent only, as in nnforge.js.
"use strict";

const nnforgeLineage = (() => {
  const $ = (id) => document.getElementById(id);

  function jobLink(job, current) {
    const link = document.createElement(current ? "strong" : "a");
    if (!current) link.href = `/ui/jobs/${job.id}`;
    link.textContent = `${job.name || job.id.slice(0, 8)} (${job.status})`;
    link.dataset.jobId = job.id;
    return link;
  }

  function how(parent) {
    return ` ← checkpoint ${parent.checkpoint_id}, load ${parent.load}, freeze ${parent.freeze}`;
  }

  // The chain from the oldest ancestor down to this job, then the descendants as nested lists.
  function draw(lineage) {
    const chain = [...lineage.ancestors].reverse();
    const line = $("lineage-chain");
    line.replaceChildren();
    for (const job of chain) line.append(jobLink(job, false), " → ");
    line.append(jobLink(lineage.job, true));
    if (lineage.job.parent) line.append(how(lineage.job.parent));
    const below = new Map();
    for (const job of lineage.descendants) {
      const siblings = below.get(job.parent.job_id) || [];
      siblings.push(job);
      below.set(job.parent.job_id, siblings);
    }
    const list = (id) => {
      const ul = document.createElement("ul");
      for (const child of below.get(id) || []) {
        const li = document.createElement("li");
        li.append(jobLink(child, false), how(child.parent));
        if (below.has(child.id)) li.append(list(child.id));
        ul.append(li);
      }
      return ul;
    };
    $("lineage-children").replaceChildren(list(lineage.job.id));
    $("lineage-more").hidden = !lineage.truncated;
    $("lineage").hidden = !chain.length && !lineage.descendants.length;
    $("lineage-fine-tune").href = `/ui/submit?from=${encodeURIComponent(lineage.job.id)}`;
  }

  async function jobPage(jobId) {
    try {
      draw(await nnforge.getJson(`/v1/jobs/${encodeURIComponent(jobId)}/lineage`));
    } catch (error) {
      if (error.message !== "unauthorized") nnforge.showError(error.message);
    }
  }

  // The submit page: ?from=ID fills the field; the form's own handler (nnforge.js) reads initFrom().
  function submitPage() {
    const from = new URLSearchParams(location.search).get("from");
    if (from) $("submit-from").value = from;
  }

  function initFrom() {
    const text = $("submit-from").value.trim();
    if (!text) return null;
    const [job, checkpoint] = text.split(":");
    const init = { job, load: $("submit-load").value, freeze: $("submit-freeze").value };
    if (checkpoint) init.checkpoint = /^\d+$/.test(checkpoint) ? Number(checkpoint) : checkpoint;
    return init;
  }

  return { jobPage, submitPage, initFrom };
})();
