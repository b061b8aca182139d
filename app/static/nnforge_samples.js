// A GAN's generated samples on a canvas: a scatter over real data points for vector data, an image grid
// for image data. Drawing only; the job page fetches /v1/jobs/{id}/samples. The canvas records what it drew
// in data-epoch, data-points and data-images, which the browser test reads.
"use strict";

const nnforgeSamples = (() => {
  const BACKGROUND = "#fff";
  const REAL = "rgba(102, 112, 122, 0.35)";
  const GENERATED = "#d62728";
  const MARGIN = 0.15; // of the real data's extent, around it
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  // Not Math.min(...values): an image set can hold more values than a call takes arguments.
  const range = (values) => values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);

  function clear(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    return ctx;
  }

  // The first two features (one feature: along a line). The view fits the real points with one scale for
  // both axes, so a ring stays round; generated points outside it sit on its edge, where a generator that
  // strays is still seen.
  function drawPoints(canvas, data) {
    const ctx = clear(canvas);
    const xy = (p) => [p[0], p.length > 1 ? p[1] : 0];
    const keep = (points) => points.map(xy).filter(([x, y]) => finite(x) && finite(y));
    const real = keep(data.reference);
    const generated = keep(data.samples);
    const basis = real.length ? real : generated;
    if (!basis.length) return 0;
    const [x0, x1] = range(basis.map((p) => p[0]));
    const [y0, y1] = range(basis.map((p) => p[1]));
    const extent = Math.max(x1 - x0, y1 - y0, 1e-9) * (1 + 2 * MARGIN);
    const scale = Math.min(canvas.width, canvas.height) / extent;
    const [cx, cy] = [(x0 + x1) / 2, (y0 + y1) / 2];
    const clamp = (v, size) => Math.min(size - 3, Math.max(3, v));
    const toCanvas = ([x, y]) => [clamp(canvas.width / 2 + (x - cx) * scale, canvas.width),
                                  clamp(canvas.height / 2 - (y - cy) * scale, canvas.height)];
    const dots = (points, color, radius) => {
      ctx.fillStyle = color;
      for (const point of points) {
        const [px, py] = toCanvas(point);
        ctx.beginPath();
        ctx.arc(px, py, radius, 0, 2 * Math.PI);
        ctx.fill();
      }
    };
    dots(real, REAL, 2);
    dots(generated, GENERATED, 2.5);
    return generated.length;
  }

  // (H, W) grey, (3, H, W) colour, any other (C, H, W) its first channel. Grey levels span the real
  // samples' range, so a generator's noise looks like noise rather than being stretched into contrast.
  function drawImages(canvas, data) {
    const ctx = clear(canvas);
    const shape = data.shape;
    const [channels, height, width] = shape.length === 3 ? shape : [1, ...shape];
    const values = [...data.reference, ...data.samples].flat(Infinity).filter(finite);
    const [low, high] = values.length ? range(values) : [0, 1];
    const level = (v) => (finite(v) ? Math.round(255 * Math.min(1, Math.max(0, (v - low) / (high - low || 1)))) : 0);
    const columns = Math.ceil(Math.sqrt(data.samples.length));
    const gap = 4;
    const cell = Math.floor((canvas.width - gap * (columns - 1)) / columns);
    const pixel = Math.max(1, Math.floor(cell / Math.max(height, width)));
    data.samples.forEach((sample, index) => {
      const left = (index % columns) * (cell + gap);
      const top = Math.floor(index / columns) * (cell + gap);
      const plane = (c) => (shape.length === 3 ? sample[c] : sample);
      for (let row = 0; row < height; row++) {
        for (let col = 0; col < width; col++) {
          const [r, g, b] = channels === 3
            ? [0, 1, 2].map((c) => level(plane(c)[row][col]))
            : Array(3).fill(level(plane(0)[row][col]));
          ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
          ctx.fillRect(left + col * pixel, top + row * pixel, pixel, pixel);
        }
      }
    });
    return data.samples.length;
  }

  function draw(canvas, data) {
    const drawn = data.kind === "points" ? drawPoints(canvas, data) : drawImages(canvas, data);
    canvas.dataset.epoch = String(data.epoch);
    canvas.dataset.points = String(data.kind === "points" ? drawn : 0);
    canvas.dataset.images = String(data.kind === "images" ? drawn : 0);
    return drawn;
  }

  return { draw };
})();
