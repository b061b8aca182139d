// The job page's "try it" box: POST /v1/jobs/{id}/predict with a pasted row of numbers (one sample per
// line), or a drawing on an 8×8 grid for 8×8 images (digits), or a GAN's n and seed. The answer is shown in
// #predict-result, whose data-classes the browser test reads; a GAN's samples are drawn on a canvas.
"use strict";

const nnforgePredict = (() => {
  const $ = (id) => document.getElementById(id);
  const INK = 16; // digits' pixel values run from 0 (white) to 16 (black)

  function parseRows(text) {
    const rows = text.split("\n").map((line) => line.trim()).filter(Boolean);
    return rows.map((line, index) => line.split(/[\s,;]+/).map((cell) => {
      const value = Number(cell);
      if (cell === "" || !Number.isFinite(value)) throw new Error(`line ${index + 1}: ${JSON.stringify(cell)} is not a number`);
      return value;
    }));
  }

  // An 8×8 grid of cells: press and drag to ink, start on an inked cell to erase. `onStroke` runs when the
  // pointer is released; `values()` reads the grid row by row, `show()` draws values into it.
  function drawingGrid(container, size, onStroke) {
    const values = new Array(size * size).fill(0);
    const cells = [];
    let painting = null; // the value a stroke paints, while the pointer is down
    container.style.cssText = `display:grid;grid-template-columns:repeat(${size},22px);gap:1px;`
      + "background:#ccc;border:1px solid #ccc;width:max-content;touch-action:none;user-select:none;cursor:crosshair";
    const paint = (index, value) => {
      values[index] = value;
      const level = Math.round(255 * (1 - Math.min(1, Math.max(0, value / INK))));
      cells[index].style.background = `rgb(${level},${level},${level})`;
    };
    for (let index = 0; index < size * size; index++) {
      const cell = document.createElement("div");
      cell.style.cssText = "width:22px;height:22px;background:#fff";
      cell.dataset.index = String(index);
      cell.addEventListener("pointerdown", (event) => {
        event.preventDefault();
        painting = values[index] >= INK / 2 ? 0 : INK;
        paint(index, painting);
      });
      cell.addEventListener("pointerenter", () => { if (painting !== null) paint(index, painting); });
      cells.push(cell);
      container.append(cell);
    }
    document.addEventListener("pointerup", () => {
      if (painting === null) return;
      painting = null;
      onStroke();
    });
    return {
      values: () => [...values],
      show: (row) => row.forEach((value, index) => paint(index, value)),
      clear: () => values.forEach((_, index) => paint(index, 0)),
    };
  }

  function showAnswer(answer, generative, sampleShape) {
    const result = $("predict-result");
    if (answer.classes) {
      result.dataset.classes = JSON.stringify(answer.classes);
      result.textContent = answer.classes.map((label, i) => {
        const ranked = answer.probabilities[i].map((p, j) => [p, answer.labels[j]]).sort((a, b) => b[0] - a[0]);
        const top = ranked.slice(0, 3).map(([p, l]) => `${l} ${(100 * p).toFixed(1)} %`).join(", ");
        return `class ${label} (${top})`;
      }).join("\n");
    } else if (generative) {
      const canvas = $("predict-canvas");
      canvas.hidden = false;
      const kind = sampleShape && sampleShape.length >= 2 ? "images" : "points";
      nnforgeSamples.draw(canvas, { kind, shape: sampleShape, samples: answer.samples, reference: [], epoch: 0 });
      result.textContent = `${answer.samples.length} samples from checkpoint ${answer.checkpoint_id}`;
    } else {
      result.textContent = answer.outputs.map((row) => JSON.stringify(row)).join("\n");
    }
  }

  async function start(jobId) {
    const job = await nnforge.getJson(`/v1/jobs/${jobId}`).catch(() => null);
    if (!job) return; // the page itself says why (no token, no such job)
    const generative = job.arch === "gan";
    const ref = job.spec.dataset;
    // The sample shape shapes the box; a deleted upload leaves it unknown (the API's 422 then names it).
    const info = await nnforge.getJson(`/v1/datasets/${encodeURIComponent(ref.id || ref.name)}`).catch(() => null);
    const shape = info ? info.sample_shape : null;
    $("predict").hidden = false;
    $("predict-gan").hidden = !generative;
    $("predict-input").hidden = generative;
    if (shape && !generative) {
      const count = shape.reduce((a, b) => a * b, 1);
      $("predict-input").placeholder = `${count} numbers per line, one sample per line (shape [${shape.join(", ")}], raw data units)`;
    }
    let grid = null;

    async function run() {
      const result = $("predict-result");
      result.classList.remove("error");
      const body = {};
      try {
        if (generative) {
          body.n = Number($("predict-n").value);
          body.seed = Number($("predict-seed").value);
        } else {
          body.inputs = parseRows($("predict-input").value);
        }
        result.textContent = "…";
        const response = await nnforge.api(`/v1/jobs/${jobId}/predict`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        showAnswer(await response.json(), generative, shape);
      } catch (error) {
        const issues = error.problem && error.problem.errors;
        result.textContent = issues ? issues.map((i) => `${i.field}: ${i.reason}`).join("\n") : error.message;
        result.classList.add("error");
        delete result.dataset.classes;
      }
    }

    if (!generative && shape && shape.length === 2 && shape[0] === 8 && shape[1] === 8) {
      $("predict-grid").hidden = false;
      grid = drawingGrid($("predict-grid"), 8, () => {
        $("predict-input").value = grid.values().join(" ");
        run();
      });
      $("predict-input").addEventListener("input", () => {
        try {
          const [row] = parseRows($("predict-input").value);
          if (row && row.length === 64) grid.show(row);
        } catch { /* shown when run */ }
      });
    }
    $("predict-run").addEventListener("click", run);
    $("predict-clear").addEventListener("click", () => {
      $("predict-input").value = "";
      $("predict-result").textContent = "";
      delete $("predict-result").dataset.classes;
      if (grid) grid.clear();
    });
  }

  return { start };
})();
