// A job's evaluations on its page: the report (confusion matrix as a heat map, per-class table, reliability
// diagram; a regressor's errors; a GAN's quality over seeds), the robustness curve (accuracy against ε for
// FGSM and PGD) with adversarial examples, and attribution maps. Reads GET /v1/jobs/{id}/evaluations;
// the buttons POST a new one. Values reach the DOM through textContent only. What it drew is recorded in
// data-* attributes, which the browser test reads.
"use strict";

const nnforgeEvaluations = (() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const ATTACK_COLORS = { fgsm: "#1f77b4", pgd: "#d62728" };
  const POLL_MS = 3000;
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  function el(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function table(headers, rows, id) {
    const t = el("table", null, id ? { id, class: "scores" } : { class: "scores" });
    const head = t.createTHead().insertRow();
    for (const h of headers) head.append(el("th", h));
    const body = t.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const value of row) tr.append(value instanceof Node ? value : el("td", value));
    }
    return t;
  }

  const latest = (items, kind) => items.filter((e) => e.kind === kind && e.status === "succeeded").at(-1);

  // --- report ------------------------------------------------------------------------------------------
  function confusionMatrix(result) {
    const matrix = result.confusion_matrix;
    const max = Math.max(1, ...matrix.flat());
    const t = el("table", null, { id: "eval-confusion", class: "heatmap" });
    const head = t.createTHead().insertRow();
    head.append(el("th", "true \\ predicted"));
    for (const c of result.classes) head.append(el("th", c));
    const body = t.createTBody();
    matrix.forEach((row, i) => {
      const tr = body.insertRow();
      tr.append(el("th", result.classes[i]));
      row.forEach((count, j) => {
        const shade = count / max;
        const td = el("td", count, { "data-count": count });
        // the diagonal (right) in blue, confusions in red; the darker, the more samples
        const rgb = i === j ? "31, 119, 180" : "214, 39, 40";
        td.style.background = count ? `rgba(${rgb}, ${0.1 + 0.8 * shade})` : "";
        td.style.color = shade > 0.55 ? "#fff" : "";
        tr.append(td);
      });
    });
    return t;
  }

  function reliabilityDiagram(result) {
    const size = 220, pad = 28, inner = size - 2 * pad;
    const root = svg("svg", { id: "eval-reliability", width: size, height: size, viewBox: `0 0 ${size} ${size}` });
    const x = (v) => pad + v * inner, y = (v) => size - pad - v * inner;
    root.append(svg("rect", { x: pad, y: pad, width: inner, height: inner, fill: "none", stroke: "#ccc" }));
    root.append(svg("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: "#999", "stroke-dasharray": "4 3" }));
    let bars = 0;
    for (const bin of result.reliability) {
      if (!bin.count) continue;
      bars++;
      const bar = svg("rect", {
        x: x(bin.lo) + 1, y: y(bin.accuracy), width: Math.max(1, x(bin.hi) - x(bin.lo) - 2),
        height: y(0) - y(bin.accuracy), fill: "rgba(31, 119, 180, 0.7)",
      });
      bar.append(svg("title"));
      bar.firstChild.textContent = `confidence ${fmt(bin.confidence)} · accuracy ${fmt(bin.accuracy)} · ${bin.count} samples`;
      root.append(bar);
    }
    const label = (text, tx, ty, rotate) => {
      const t = svg("text", { x: tx, y: ty, "font-size": 10, "text-anchor": "middle", transform: rotate || "" });
      t.textContent = text;
      root.append(t);
    };
    label("confidence", size / 2, size - 6);
    label("accuracy", 10, size / 2, `rotate(-90 10 ${size / 2})`);
    root.dataset.bars = bars;
    return root;
  }

  function histogram(edges, counts, id) {
    const width = 360, height = 140, pad = 20;
    const root = svg("svg", { id, width, height });
    const max = Math.max(1, ...counts);
    const w = (width - 2 * pad) / counts.length;
    counts.forEach((c, i) => {
      const h = (c / max) * (height - 2 * pad);
      root.append(svg("rect", { x: pad + i * w, y: height - pad - h, width: w - 1, height: h, fill: "#1f77b4" }));
    });
    const caption = svg("text", { x: width / 2, y: height - 4, "font-size": 10, "text-anchor": "middle" });
    caption.textContent = `residual ${fmt(edges[0])} … ${fmt(edges.at(-1))}`;
    root.append(caption);
    return root;
  }

  function showReport(box, evaluation) {
    const r = evaluation.result;
    const where = `checkpoint ${evaluation.checkpoint_id}, ${evaluation.split} split`;
    if (r.task === "classification") {
      box.append(el("p", `${where}: accuracy ${fmt(r.accuracy, 4)} · macro F1 ${fmt(r.macro.f1)} · `
        + `weighted F1 ${fmt(r.weighted.f1)} · expected calibration error ${fmt(r.ece, 4)} (15 bins) · ${r.samples} samples`));
      const row = el("div", null, { class: "eval-row" });
      const left = el("div");
      left.append(el("h4", "Confusion matrix (rows: true class, columns: predicted)"), confusionMatrix(r));
      const right = el("div");
      right.append(el("h4", "Reliability diagram"), reliabilityDiagram(r));
      row.append(left, right);
      box.append(row);
      box.append(el("h4", "Per class"), table(
        ["class", "precision", "recall", "F1", "support"],
        r.per_class.map((c) => [c.class, fmt(c.precision), fmt(c.recall), fmt(c.f1), c.support]),
        "eval-per-class",
      ));
      if (r.top_confusions.length) {
        box.append(el("p", "Most frequent confusions: " + r.top_confusions.slice(0, 5)
          .map((c) => `${c.true} → ${c.predicted} (${c.count})`).join(", ")));
      }
    } else if (r.task === "regression") {
      box.append(el("p", `${where}: MAE ${fmt(r.mae, 4)} · RMSE ${fmt(r.rmse, 4)} · R² ${fmt(r.r2, 4)} · ${r.samples} samples`));
      box.append(histogram(r.residual_histogram.edges, r.residual_histogram.counts, "eval-residuals"));
    } else {
      box.append(el("p", `${where}: quality over ${r.seeds.length} latent seeds`));
      box.append(table(["figure", "mean", "spread (std)"],
        Object.keys(r.mean).map((k) => [k, fmt(r.mean[k], 4), fmt(r.std[k], 4)]), "eval-gan"));
    }
  }

  // --- robustness --------------------------------------------------------------------------------------
  function robustnessCurve(points) {
    const width = 420, height = 240, pad = 36;
    const root = svg("svg", { id: "eval-robustness", width, height });
    const maxEps = Math.max(1e-9, ...points.map((p) => p.epsilon));
    const x = (e) => pad + (e / maxEps) * (width - 2 * pad), y = (a) => height - pad - a * (height - 2 * pad);
    root.append(svg("line", { x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: "#999" }));
    root.append(svg("line", { x1: pad, y1: y(0), x2: pad, y2: y(1), stroke: "#999" }));
    const text = (t, tx, ty, anchor = "middle") => {
      const node = svg("text", { x: tx, y: ty, "font-size": 10, "text-anchor": anchor });
      node.textContent = t;
      root.append(node);
    };
    text("ε (normalised input units)", width / 2, height - 6);
    text("1.0", pad - 4, y(1) + 3, "end");
    text("0", pad - 4, y(0) + 3, "end");
    text(fmt(maxEps, 2), width - pad, y(0) + 14);
    let drawn = 0;
    const attacks = [...new Set(points.map((p) => p.attack))];
    attacks.forEach((attack, k) => {
      const mine = points.filter((p) => p.attack === attack);
      const color = ATTACK_COLORS[attack] || "#333";
      root.append(svg("polyline", {
        points: mine.map((p) => `${x(p.epsilon)},${y(p.accuracy)}`).join(" "),
        fill: "none", stroke: color, "stroke-width": 2, "data-attack": attack,
      }));
      for (const p of mine) {
        root.append(svg("circle", { cx: x(p.epsilon), cy: y(p.accuracy), r: 3, fill: color }));
        drawn++;
      }
      text(attack.toUpperCase(), width - pad, pad + 12 * k, "end");
      root.lastChild.setAttribute("fill", color);
    });
    root.dataset.points = drawn;
    return root;
  }

  // An 8×8 (or any H×W) grid of values on a small canvas: grey levels for data, red/blue for attributions.
  function grid(values, { signed = false, scale = 10, range } = {}) {
    const rows = values.length, cols = values[0].length;
    const canvas = el("canvas", null, { width: cols * scale, height: rows * scale, class: "eval-grid" });
    const ctx = canvas.getContext("2d");
    const flat = values.flat().filter((v) => v !== null);
    const [lo, hi] = range || [Math.min(...flat), Math.max(...flat)];
    const peak = Math.max(Math.abs(lo), Math.abs(hi), 1e-12);
    values.forEach((row, i) => row.forEach((v, j) => {
      if (signed) {
        const s = Math.min(1, Math.abs(v ?? 0) / peak);
        ctx.fillStyle = (v ?? 0) >= 0 ? `rgba(214, 39, 40, ${s})` : `rgba(31, 119, 180, ${s})`;
      } else {
        const g = Math.round(255 * (1 - ((v ?? lo) - lo) / Math.max(hi - lo, 1e-12)));
        ctx.fillStyle = `rgb(${g}, ${g}, ${g})`;
      }
      ctx.fillRect(j * scale, i * scale, scale, scale);
    }));
    return canvas;
  }

  const asGrid = (value) => (Array.isArray(value[0]) ? value.map((r) => r.flat()) : [value]);

  function bars(values) {
    const width = 180, rowH = 12;
    const root = svg("svg", { width, height: rowH * values.length + 4, class: "eval-bars" });
    const peak = Math.max(1e-12, ...values.map((v) => Math.abs(v ?? 0)));
    values.forEach((v, i) => {
      const w = (Math.abs(v ?? 0) / peak) * (width / 2 - 4);
      root.append(svg("rect", {
        x: v >= 0 ? width / 2 : width / 2 - w, y: 2 + i * rowH, width: w, height: rowH - 3,
        fill: v >= 0 ? "#d62728" : "#1f77b4",
      }));
    });
    root.append(svg("line", { x1: width / 2, y1: 0, x2: width / 2, y2: rowH * values.length + 4, stroke: "#999" }));
    return root;
  }

  function showRobustness(box, evaluation) {
    const r = evaluation.result;
    box.append(el("p", `checkpoint ${evaluation.checkpoint_id}, ${evaluation.split} split, ${r.samples} samples: `
      + `clean accuracy ${fmt(r.clean_accuracy)}; ε in ${r.units}`));
    box.append(robustnessCurve(r.points));
    box.append(table(["attack", "ε", "accuracy", "attack success"],
      r.points.map((p) => [p.attack, p.epsilon, fmt(p.accuracy), fmt(p.attack_success_rate)]), "eval-robustness-table"));
    const ex = r.examples;
    if (!ex.items.length) return;
    box.append(el("h4", `Adversarial examples (${ex.attack.toUpperCase()}, ε = ${ex.epsilon}): before → after`));
    const row = el("div", null, { class: "eval-row", id: "eval-examples" });
    for (const item of ex.items) {
      const figure = el("figure");
      if (ex.kind === "images") {
        const all = [...item.before.flat(), ...item.after.flat()].filter((v) => v !== null);
        const range = [Math.min(...all), Math.max(...all)];
        figure.append(grid(asGrid(item.before), { range }), el("span", " → "), grid(asGrid(item.after), { range }));
      } else {
        figure.append(el("code", `[${item.before.map((v) => fmt(v)).join(", ")}] → [${item.after.map((v) => fmt(v)).join(", ")}]`));
      }
      figure.append(el("figcaption", `${item.label} → ${item.predicted}`));
      row.append(figure);
    }
    box.append(row);
  }

  // --- attribution -------------------------------------------------------------------------------------
  function showAttribution(box, evaluation) {
    const r = evaluation.result;
    box.append(el("p", `checkpoint ${evaluation.checkpoint_id}, ${evaluation.split} split: ${r.samples} samples, `
      + `attributing the ${r.target} from the ${r.baseline}; integrated gradients complete within `
      + `${r.delta_tolerance} on ${fmt(100 * r.fraction_delta_below_tolerance, 0)} % (max |δ| ${fmt(r.max_abs_delta, 4)}). `
      + "Red raises the output, blue lowers it."));
    const row = el("div", null, { class: "eval-row", id: "eval-attributions", "data-layout": r.layout });
    for (const item of r.items.slice(0, 8)) {
      const figure = el("figure");
      if (r.layout === "points") {
        figure.append(bars(item.integrated_gradients.flat()));
      } else {  // images (H×W) and sequences (time × feature) alike as a grid
        figure.append(grid(asGrid(item.input)), grid(asGrid(item.saliency)),
          grid(asGrid(item.integrated_gradients), { signed: true }));
      }
      const label = item.label === undefined ? "" : `${item.label} (predicted ${item.predicted}) · `;
      figure.append(el("figcaption", `${label}δ ${fmt(item.delta, 4)}`));
      row.append(figure);
    }
    box.append(row);
    if (r.layout !== "points") box.append(el("p", "Each: the input, its saliency, its integrated gradients."));
  }

  // --- the section ---------------------------------------------------------------------------------------
  const SHOW = { report: showReport, robustness: showRobustness, attribution: showAttribution };

  function start(jobId) {
    let drawn = "";
    const section = $("evaluations");

    async function refresh() {
      const { items } = await nnforge.getJson(`/v1/jobs/${jobId}/evaluations`);
      const state = JSON.stringify(items.map((e) => [e.id, e.status]));
      if (state === drawn) return;
      drawn = state;
      $("evaluations-list").replaceChildren(table(["kind", "status", "checkpoint", "split", "error"],
        items.map((e) => [e.kind, e.status, e.checkpoint_id, e.split, e.error ? e.error.split("\n")[0] : ""])));
      for (const kind of Object.keys(SHOW)) {
        const box = $(`evaluation-${kind}`);
        const evaluation = latest(items, kind);
        box.replaceChildren();
        box.hidden = !evaluation;
        if (evaluation) {
          box.append(el("h3", kind === "report" ? "Report" : kind === "robustness" ? "Robustness" : "Attribution"));
          SHOW[kind](box, evaluation);
        }
      }
    }

    for (const button of section.querySelectorAll("button[data-kind]")) {
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await nnforge.api(`/v1/jobs/${jobId}/evaluations`, {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ kind: button.dataset.kind }),
          });
          await refresh();
        } catch (error) {
          nnforge.showError(error.message);
        } finally {
          button.disabled = false;
        }
      });
    }

    const tick = () => refresh().catch(() => {}).finally(() => setTimeout(tick, POLL_MS));
    tick();
  }

  return { start };
})();
