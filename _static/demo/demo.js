// Read your own handwriting: the book's two networks, run in the reader's browser.
//
// A forward pass of the few layer types the book's models use (convolution, Leaky ReLU,
// max pooling, flatten, dense, softmax), on weights exported from the results ledger by
// helpers.demo.export at build time. No runtime library, no request outside this site.
//
// Only the demo page loads this script, and it fetches the models (about 1.7 MB) only once
// the drawing area is on screen (IntersectionObserver) or used, and the sample images only
// when "a random test image" is pressed: a reader who never scrolls to the demo pays for none.
//
// Interface for tests:
//   window.uspsDemo.ready              resolves once both models are loaded (asking starts loading)
//   window.uspsDemo.classify(pixels)   256 numbers, row-major, in [-1, 1] (-1 background, 1 ink)
//                                      -> Promise of {paper: [10 probabilities], best: [10]}
//   window.uspsDemo.loading            whether the models have been asked for yet
(function () {
  "use strict";
  const here = document.currentScript.src.replace(/[^/]*$/, "");
  const MODELS = { paper: "the paper's network", best: "W, the book's best model" };

  async function loadModel(name) {
    const spec = await (await fetch(here + "models/" + name + ".json")).json();
    const buffer = await (await fetch(here + "models/" + spec.weights)).arrayBuffer();
    const all = new Float32Array(buffer);
    spec.tensors = spec.arrays.map((a) => all.subarray(a.offset, a.offset + a.length));
    return spec;
  }

  // Tensors are {h, w, c, data} in height-width-channel order (Keras' channels_last).
  function conv(x, kernel, bias, shape, padding) {
    const [kh, kw, cin, cout] = shape;
    const ph = padding === "same" ? Math.floor((kh - 1) / 2) : 0;
    const pw = padding === "same" ? Math.floor((kw - 1) / 2) : 0;
    const oh = padding === "same" ? x.h : x.h - kh + 1;
    const ow = padding === "same" ? x.w : x.w - kw + 1;
    const out = new Float64Array(oh * ow * cout);
    for (let y = 0; y < oh; y++) {
      for (let xx = 0; xx < ow; xx++) {
        const o = (y * ow + xx) * cout;
        for (let k = 0; k < cout; k++) out[o + k] = bias[k];
        for (let i = 0; i < kh; i++) {
          const iy = y + i - ph;
          if (iy < 0 || iy >= x.h) continue;
          for (let j = 0; j < kw; j++) {
            const ix = xx + j - pw;
            if (ix < 0 || ix >= x.w) continue;
            const inBase = (iy * x.w + ix) * cin;
            const kBase = (i * kw + j) * cin * cout;
            for (let c = 0; c < cin; c++) {
              const v = x.data[inBase + c];
              if (v === 0) continue;
              const kr = kBase + c * cout;
              for (let k = 0; k < cout; k++) out[o + k] += v * kernel[kr + k];
            }
          }
        }
      }
    }
    return { h: oh, w: ow, c: cout, data: out };
  }

  function maxPool(x, size) {
    const oh = Math.floor(x.h / size), ow = Math.floor(x.w / size);
    const out = new Float64Array(oh * ow * x.c).fill(-Infinity);
    for (let y = 0; y < oh * size; y++) {
      for (let xx = 0; xx < ow * size; xx++) {
        const o = (Math.floor(y / size) * ow + Math.floor(xx / size)) * x.c, i = (y * x.w + xx) * x.c;
        for (let c = 0; c < x.c; c++) if (x.data[i + c] > out[o + c]) out[o + c] = x.data[i + c];
      }
    }
    return { h: oh, w: ow, c: x.c, data: out };
  }

  function dense(v, kernel, bias, shape) {
    const [n, m] = shape;
    const out = new Float64Array(m);
    for (let k = 0; k < m; k++) out[k] = bias[k];
    for (let i = 0; i < n; i++) {
      const a = v[i];
      if (a === 0) continue;
      const row = i * m;
      for (let k = 0; k < m; k++) out[k] += a * kernel[row + k];
    }
    return out;
  }

  function activate(data, name) {
    if (name === "relu") return data.map((v) => (v > 0 ? v : 0));
    if (name === "softmax") {
      const top = Math.max(...data);
      const e = data.map((v) => Math.exp(v - top));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / sum);
    }
    if (name === "linear") return data;
    throw new Error("unsupported activation " + name);
  }

  function forward(model, pixels) {
    const input = Float64Array.from(pixels, (p) => (model.scale === "unit" ? (p + 1) / 2 : p));
    let x = { h: 16, w: 16, c: 1, data: input };
    for (const layer of model.layers) {
      const t = model.tensors;
      if (layer.type === "conv") {
        x = conv(x, t[layer.kernel], t[layer.bias], layer.shape, layer.padding);
        x.data = activate(x.data, layer.activation);
      } else if (layer.type === "leaky_relu") {
        x.data = x.data.map((v) => (v > 0 ? v : v * layer.slope));
      } else if (layer.type === "max_pool") {
        x = maxPool(x, layer.size);
      } else if (layer.type === "flatten") {
        x = x.data;
      } else if (layer.type === "dense") {
        x = activate(dense(x, t[layer.kernel], t[layer.bias], layer.shape), layer.activation);
      } else {
        throw new Error("unsupported layer " + layer.type);
      }
    }
    return Array.from(x);
  }

  // Fetched on first need, once: the models, and the sample images.
  let models = null, samples = null;
  function loadModels() {
    if (!models) {
      models = Promise.all(Object.keys(MODELS).map(loadModel)).then((list) =>
        Object.fromEntries(list.map((m) => [m.name, m])));
    }
    return models;
  }
  function loadSamples() {
    if (!samples) samples = fetch(here + "models/samples.json").then((r) => r.json());
    return samples;
  }
  const api = {
    get ready() { return loadModels().then(() => true); },
    get loading() { return models !== null; },
    classify: async (pixels) => {
      if (!pixels || pixels.length !== 256) throw new Error("classify needs 256 pixels in [-1, 1]");
      const loaded = await loadModels();
      return { paper: forward(loaded.paper, pixels), best: forward(loaded.best, pixels) };
    },
    get samples() { return loadSamples(); },
  };
  window.uspsDemo = api;

  // ------------------------------------------------------------------ the page
  function setup(root) {
    const pad = root.querySelector(".usps-pad"), pctx = pad.getContext("2d");
    const view = root.querySelector(".usps-view"), vctx = view.getContext("2d");
    const status = root.querySelector(".usps-status");
    const bars = {};
    for (const name of Object.keys(MODELS)) {
      const box = root.querySelector(`.usps-bars[data-model="${name}"]`);
      box.innerHTML = `<div class="usps-title">${MODELS[name]}: <b class="usps-pred">–</b></div>` +
        Array.from({ length: 10 }, (_, d) =>
          `<div class="usps-row"><span>${d}</span><div class="usps-bar"><div style="width:0%"></div></div>` +
          `<span class="usps-p">0.00</span></div>`).join("");
      bars[name] = box;
    }
    function clear() {
      pctx.fillStyle = "#fff";
      pctx.fillRect(0, 0, pad.width, pad.height);
      vctx.fillStyle = "#fff";
      vctx.fillRect(0, 0, view.width, view.height);
      for (const name of Object.keys(bars)) show(name, new Array(10).fill(0), true);
      status.textContent = "Draw a digit in the box.";
    }
    function show(name, probabilities, empty) {
      const rows = bars[name].querySelectorAll(".usps-row");
      probabilities.forEach((p, d) => {
        rows[d].querySelector(".usps-bar div").style.width = (100 * p).toFixed(1) + "%";
        rows[d].querySelector(".usps-p").textContent = p.toFixed(2);
      });
      const best = probabilities.indexOf(Math.max(...probabilities));
      bars[name].querySelector(".usps-pred").textContent = empty ? "–" : String(best);
    }
    function drawView(pixels) {
      const cell = view.width / 16;
      pixels.forEach((p, i) => {
        const g = Math.round(255 * (1 - (p + 1) / 2));
        vctx.fillStyle = `rgb(${g},${g},${g})`;
        vctx.fillRect((i % 16) * cell, Math.floor(i / 16) * cell, cell, cell);
      });
    }
    // The drawing as the USPS digits were prepared: crop to the ink, scale the longer side to
    // 16 pixels keeping the aspect ratio, centre, grey levels in [-1, 1] (-1 background, 1 ink).
    function toPixels() {
      const { data, width, height } = pctx.getImageData(0, 0, pad.width, pad.height);
      let x0 = width, y0 = height, x1 = -1, y1 = -1;
      for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
        if (data[(y * width + x) * 4] < 200) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      }
      if (x1 < 0) return null;
      const w = x1 - x0 + 1, h = y1 - y0 + 1, s = 16 / Math.max(w, h);
      const small = document.createElement("canvas");
      small.width = small.height = 16;
      const sctx = small.getContext("2d");
      sctx.fillStyle = "#fff";
      sctx.fillRect(0, 0, 16, 16);
      sctx.imageSmoothingEnabled = true;
      sctx.imageSmoothingQuality = "high";
      sctx.drawImage(pad, x0, y0, w, h, (16 - w * s) / 2, (16 - h * s) / 2, w * s, h * s);
      const grey = sctx.getImageData(0, 0, 16, 16).data;
      return Array.from({ length: 256 }, (_, i) => 1 - 2 * (grey[i * 4] / 255));
    }
    async function classifyPixels(pixels) {
      drawView(pixels);
      const start = performance.now();
      const result = await api.classify(pixels);
      root.dataset.lastMs = (performance.now() - start).toFixed(2);
      for (const name of Object.keys(MODELS)) show(name, result[name], false);
      return result;
    }
    let pending = false;
    function update() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(async () => {
        pending = false;
        const pixels = toPixels();
        if (pixels) await classifyPixels(pixels);
      });
    }
    let drawing = false, last = null;
    function point(e) {
      const r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
    }
    pad.addEventListener("pointerdown", (e) => {
      whenNeeded();
      drawing = true; last = point(e); pad.setPointerCapture(e.pointerId);
      status.textContent = "Your drawing, as the models see it (16 × 16), and what they read:";
      delete root.dataset.trueLabel;
    });
    pad.addEventListener("pointermove", (e) => {
      if (!drawing) return;
      const p = point(e);
      pctx.strokeStyle = "#000"; pctx.lineWidth = pad.width / 12; pctx.lineCap = pctx.lineJoin = "round";
      pctx.beginPath(); pctx.moveTo(...last); pctx.lineTo(...p); pctx.stroke();
      last = p;
      update();
    });
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
      pad.addEventListener(type, () => { if (drawing) { drawing = false; update(); } });
    }
    root.querySelector(".usps-clear").addEventListener("click", clear);
    root.querySelector(".usps-random").addEventListener("click", async () => {
      whenNeeded();
      const samples = await loadSamples();
      const k = Math.floor(Math.random() * samples.labels.length);
      const pixels = samples.pixels[k];
      clear();
      const cell = pad.width / 16;
      pixels.forEach((p, i) => {
        const g = Math.round(255 * (1 - (p + 1) / 2));
        pctx.fillStyle = `rgb(${g},${g},${g})`;
        pctx.fillRect((i % 16) * cell, Math.floor(i / 16) * cell, cell, cell);
      });
      root.dataset.trueLabel = samples.labels[k];
      status.textContent = `Test image ${samples.index[k]} of the USPS test set; its true label is ${samples.labels[k]}.`;
      await classifyPixels(pixels);
    });
    pad.style.touchAction = "none";
    clear();
    // Load the models once the drawing area is on screen, or as soon as it is used.
    let asked = false;
    function whenNeeded() {
      if (asked) return;
      asked = true;
      status.textContent = "Loading the two models…";
      loadModels().then(() => {
        root.dataset.ready = "1";
        if (status.textContent === "Loading the two models…") status.textContent = "Draw a digit in the box.";
      }, (error) => {
        status.textContent = location.protocol === "file:"
          ? "Browsers do not let a page opened as a file fetch the models: serve the book instead " +
            "(python3 -m http.server -d _build/html) and open it at http://localhost:8000."
          : "The models could not be loaded (" + error.message + "); reload the page to try again.";
      });
    }
    if ("IntersectionObserver" in window) {
      const observer = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) { observer.disconnect(); whenNeeded(); }
      });
      observer.observe(pad);
    } else {
      whenNeeded();
    }
  }
  function start() { document.querySelectorAll(".usps-demo").forEach(setup); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
