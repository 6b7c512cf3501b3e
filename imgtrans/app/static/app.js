"use strict";
// The page of `imgtrans app`. The canvas is painted pixel by pixel into an ImageData buffer,
// never with the canvas's anti-aliased strokes, so that every pixel keeps a colour of the label
// palette (a blend of two labels is no label). The PNG the canvas gives is what the server
// translates, and what "Download input" saves.
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const output = $("output");
  const state = {
    config: null, pixels: null, colour: [0, 0, 0], history: [], mode: "draw", upload: null,
    drawing: false, last: null, start: null, snapshot: null, busy: false, pending: false, seq: 0,
    urls: {},
  };

  const message = (text) => { $("message").textContent = text; $("message").hidden = !text; };
  const status = (text) => { $("status").textContent = text; };
  const mib = (bytes) => (bytes / 1048576).toFixed(1);

  // ---- the pixel buffer ----------------------------------------------------------------
  function commit() { ctx.putImageData(state.pixels, 0, 0); }

  function setPixel(x, y, rgb) {
    if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return;
    const i = (y * canvas.width + x) * 4, d = state.pixels.data;
    d[i] = rgb[0]; d[i + 1] = rgb[1]; d[i + 2] = rgb[2]; d[i + 3] = 255;
  }

  // A disc of diameter `size` centred on (x, y): the pixels whose centres lie inside it.
  function stamp(x, y, size, rgb) {
    const r = size / 2;
    setPixel(Math.floor(x), Math.floor(y), rgb);
    for (let py = Math.floor(y - r); py <= Math.ceil(y + r); py++) {
      for (let px = Math.floor(x - r); px <= Math.ceil(x + r); px++) {
        const dx = px + 0.5 - x, dy = py + 0.5 - y;
        if (dx * dx + dy * dy <= r * r) setPixel(px, py, rgb);
      }
    }
  }

  function line(a, b, size, rgb) {
    const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(0.5, size / 4)));
    for (let s = 0; s <= steps; s++) {
      stamp(a[0] + (b[0] - a[0]) * s / steps, a[1] + (b[1] - a[1]) * s / steps, size, rgb);
    }
  }

  function fillRect(a, b, rgb) {
    const x0 = Math.floor(Math.min(a[0], b[0])), x1 = Math.floor(Math.max(a[0], b[0]));
    const y0 = Math.floor(Math.min(a[1], b[1])), y1 = Math.floor(Math.max(a[1], b[1]));
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) setPixel(x, y, rgb);
  }

  function fill(rgb) { fillRect([0, 0], [canvas.width - 1, canvas.height - 1], rgb); }

  function remember() {
    state.history.push(new Uint8ClampedArray(state.pixels.data));
    if (state.history.length > 50) state.history.shift();
  }

  // ---- palette and tools ---------------------------------------------------------------
  const palette = () => state.config.palette;
  const classColour = (name) => palette().classes.find((c) => c.name === name).rgb;
  const tool = () => document.querySelector("input[name=tool]:checked").value;
  const size = () => Number($("brush-size").value);

  function choose(name, rgb) {
    state.colour = rgb;
    for (const b of document.querySelectorAll(".swatch")) b.setAttribute("aria-pressed", String(b.dataset.name === name));
    if (tool() === "eraser") $("tool-brush").checked = true;
  }

  function buildPalette() {
    const box = $("palette");
    for (const c of palette().classes) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "swatch"; b.dataset.name = c.name; b.id = `label-${c.name}`;
      b.title = `${c.name}: rgb(${c.rgb.join(", ")})`;
      const chip = document.createElement("span");
      chip.className = "chip"; chip.style.background = c.hex;
      b.append(chip, document.createTextNode(c.name));
      b.addEventListener("click", () => choose(c.name, c.rgb));
      box.append(b);
    }
    if (palette().free) {
      const picker = document.createElement("input");
      picker.type = "color"; picker.id = "free-colour"; picker.title = "any colour";
      picker.addEventListener("input", () => {
        const v = picker.value;
        choose("", [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16)));
      });
      box.append(picker);
    }
    choose(palette().brush, classColour(palette().brush));
  }

  // ---- drawing -------------------------------------------------------------------------
  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left - canvas.clientLeft) * canvas.width / canvas.clientWidth,
            (e.clientY - r.top - canvas.clientTop) * canvas.height / canvas.clientHeight];
  }

  const strokeColour = () => (tool() === "eraser" ? classColour(palette().eraser) : state.colour);

  canvas.addEventListener("pointerdown", (e) => {
    if (!state.pixels) return;
    canvas.setPointerCapture(e.pointerId);
    remember();
    state.drawing = true;
    state.last = state.start = point(e);
    if (tool() === "rect") {
      state.snapshot = new Uint8ClampedArray(state.pixels.data);
      fillRect(state.start, state.start, strokeColour());
    } else {
      stamp(state.start[0], state.start[1], size(), strokeColour());
    }
    commit();
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!state.drawing) return;
    const p = point(e);
    if (tool() === "rect") {
      state.pixels.data.set(state.snapshot);
      fillRect(state.start, p, strokeColour());
    } else {
      line(state.last, p, size(), strokeColour());
    }
    state.last = p;
    commit();
  });

  const endStroke = () => {
    if (!state.drawing) return;
    state.drawing = false;
    state.snapshot = null;
    if ($("live").checked) translate();
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  $("brush-size").addEventListener("input", () => { $("brush-size-value").textContent = $("brush-size").value; });
  $("undo").addEventListener("click", () => {
    if (!state.history.length) return;
    state.pixels.data.set(state.history.pop());
    commit();
    if ($("live").checked) translate();
  });
  $("clear").addEventListener("click", () => {
    remember();
    fill(classColour(palette().clear));
    commit();
    if ($("live").checked) translate();
  });

  async function loadExample() {
    const response = await fetch("/api/example");
    const bitmap = await createImageBitmap(await response.blob());
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    ctx.drawImage(bitmap, 0, 0);
    state.pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    $("example-source").textContent = `Example: ${state.config.example}. ${canvas.width}x${canvas.height} pixels.`;
  }
  $("example").addEventListener("click", async () => {
    if (state.pixels) remember();
    await loadExample();
    if ($("live").checked) translate();
  });

  // ---- modes and upload ----------------------------------------------------------------
  for (const button of document.querySelectorAll("#modes button")) {
    button.addEventListener("click", () => {
      state.mode = button.dataset.mode;
      for (const b of document.querySelectorAll("#modes button")) b.setAttribute("aria-selected", String(b === button));
      $("draw-panel").hidden = state.mode !== "draw";
      $("upload-panel").hidden = state.mode !== "upload";
      message("");
    });
  }

  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    state.upload = file;
    setURL("preview", file, (url) => { $("upload-preview").src = url; });
    translate();
  });

  function setURL(key, blob, use) {
    if (state.urls[key]) URL.revokeObjectURL(state.urls[key]);
    state.urls[key] = URL.createObjectURL(blob);
    use(state.urls[key]);
  }

  function offer(id, blob, name) {
    setURL(id, blob, (url) => {
      const link = $(id);
      link.href = url; link.download = name; link.setAttribute("aria-disabled", "false");
    });
  }

  // ---- translation ---------------------------------------------------------------------
  async function currentInput() {
    if (state.mode === "draw") {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      return [blob, "drawing.png"];
    }
    return [state.upload, state.upload ? state.upload.name : ""];
  }

  async function translate() {
    if (state.busy) { state.pending = true; return; }  // the latest input is sent when this one is done
    const [blob, name] = await currentInput();
    if (!blob) { message("Choose an image file to upload first."); return; }
    if (blob.size > state.config.max_upload_bytes) {
      message(`The upload is ${mib(blob.size)} MiB; the limit is ${mib(state.config.max_upload_bytes)} MiB: upload a smaller image.`);
      return;
    }
    state.busy = true;
    message("");
    status("translating…");
    offer("download-input", blob, name);
    const started = performance.now();
    try {
      const response = await fetch("/api/translate", {
        method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" },
      });
      if (!response.ok) {
        let text = `The server answered ${response.status}.`;
        try { text = (await response.json()).error; } catch (_) { /* not JSON: keep the status */ }
        message(text.charAt(0).toUpperCase() + text.slice(1));
        status("");
        return;
      }
      const result = await response.blob();
      setURL("output", result, (url) => { output.src = url; });
      offer("download-output", result, name.replace(/\.[^.]*$/, "") + "-translated.png");
      await output.decode().catch(() => {});
      state.seq += 1;
      output.dataset.seq = String(state.seq);
      const total = Math.round(performance.now() - started);
      status(`Translated in ${total} ms (model: ${response.headers.get("X-Translate-Ms")} ms).`);
    } catch (error) {
      message(`Cannot reach the imgtrans app server (${error.message}); is it still running?`);
      status("");
    } finally {
      state.busy = false;
      if (state.pending) { state.pending = false; translate(); }
    }
  }
  $("translate").addEventListener("click", translate);

  async function start() {
    const response = await fetch("/api/config");
    state.config = await response.json();
    $("model-name").textContent = state.config.model;
    document.title = `imgtrans: ${state.config.model}`;
    $("upload-limit").textContent = `${state.config.formats.join(", ")}; up to ${mib(state.config.max_upload_bytes)} MiB and ${state.config.max_side} px a side`;
    buildPalette();
    await loadExample();
    document.body.dataset.ready = "true";
    translate();
  }
  start().catch((error) => message(`The page could not start: ${error.message}`));
})();
