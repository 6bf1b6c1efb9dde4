// The annotation page: shows one image at a time with the model's prediction and explanation,
// lets the annotator mark irrelevant regions (candidate regions, brush, eraser) and saves each
// answer through the JSON API. Masks are Uint8Arrays of height * width, row-major, 1 = irrelevant.
"use strict";

(() => {
  const TOKEN = new URLSearchParams(location.search).get("token");
  const AUTH = TOKEN ? { "X-Annotate-Token": TOKEN } : {};
  const DISPLAY_SIZE = 448;  // the longer side of the image on screen, in CSS pixels
  const MAX_UNDO = 100;

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const maskPixels = document.createElement("canvas");  // the mask at the image's resolution
  const maskLayer = document.createElement("canvas");   // the mask zoomed and striped

  const state = {
    items: [],          // [{index, decision}] in the order to show them
    progress: null,
    nextCommand: null,
    store: "",
    item: null,         // {data, image, heat, outlines, pixels}
    mask: null,
    undo: [],
    tool: "region",
    brushSize: 3,
    stroke: null,       // {last: [x, y], value} while the brush or eraser is down
    pointer: null,      // [x, y] in image pixels, for the brush outline
    zoom: 1,
    busy: false,
    navigation: 0,
  };
  const loaded = new Map();  // index -> Promise of an item
  const drafts = new Map();  // index -> {mask, undo}: marks not saved yet

  // -- server ------------------------------------------------------------------------------------

  class ApiError extends Error {}

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...AUTH, ...(options.headers || {}) } });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      throw new ApiError(message);
    }
    return response;
  }

  async function bitmap(path) {
    return createImageBitmap(await (await api(path)).blob());
  }

  function load(index) {
    if (!loaded.has(index)) {
      const base = `/api/items/${index}`;
      const item = Promise.all([api(base).then((r) => r.json()), bitmap(`${base}/image.png`), bitmap(`${base}/heatmap.png`)])
        .then(([data, image, heat]) => ({ data, image, heat, outlines: outlines(data), pixels: new Map() }));
      item.catch(() => loaded.delete(index));
      loaded.set(index, item);
    }
    return loaded.get(index);
  }

  function prefetch(index) {
    if (index !== null && index !== undefined) load(index).catch(() => {});
  }

  // -- masks -------------------------------------------------------------------------------------

  function encodeMask(mask, height, width) {
    const bytes = new Uint8Array(Math.ceil(mask.length / 8));
    mask.forEach((v, i) => { if (v) bytes[i >> 3] |= 0x80 >> (i & 7); });
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { shape: [height, width], bits: btoa(text) };
  }

  function decodeMask({ shape, bits }) {
    const raw = atob(bits);
    const mask = new Uint8Array(shape[0] * shape[1]);
    for (let i = 0; i < mask.length; i++) mask[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
    return mask;
  }

  function savedMask(data) {
    const answer = data.answer;
    return answer && answer.mask ? decodeMask(answer.mask) : new Uint8Array(data.width * data.height);
  }

  const markedCount = () => state.mask.reduce((sum, v) => sum + v, 0);
  const sameMask = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const unsaved = () => !sameMask(state.mask, savedMask(state.item.data));

  function segmentPixels(segment) {
    const { pixels, data } = state.item;
    if (!pixels.has(segment)) {
      const found = [];
      data.segments.forEach((s, i) => { if (s === segment) found.push(i); });
      pixels.set(segment, found);
    }
    return pixels.get(segment);
  }

  function pushUndo() {
    state.undo.push(state.mask.slice());
    if (state.undo.length > MAX_UNDO) state.undo.shift();
  }

  function toggleRegion([x, y]) {
    const { width } = state.item.data;
    const segment = state.item.data.segments[Math.floor(y) * width + Math.floor(x)];
    const pixels = segmentPixels(segment);
    const value = pixels.every((i) => state.mask[i]) ? 0 : 1;
    pushUndo();
    pixels.forEach((i) => { state.mask[i] = value; });
    changed();
  }

  function acceptCandidates() {
    pushUndo();
    state.item.data.candidates.forEach((segment) => segmentPixels(segment).forEach((i) => { state.mask[i] = 1; }));
    changed();
  }

  // Paint (value 1) or erase (0) every pixel whose centre lies within the brush radius of the
  // segment from `from` to `to` (image pixels), so a stroke is the same however the mouse moved.
  function paint(from, to, value) {
    const { width, height } = state.item.data;
    const r = state.brushSize / 2;
    const [x0, y0] = from, [x1, y1] = to;
    const dx = x1 - x0, dy = y1 - y0, length2 = dx * dx + dy * dy;
    const xs = [Math.max(0, Math.floor(Math.min(x0, x1) - r)), Math.min(width - 1, Math.ceil(Math.max(x0, x1) + r))];
    const ys = [Math.max(0, Math.floor(Math.min(y0, y1) - r)), Math.min(height - 1, Math.ceil(Math.max(y0, y1) + r))];
    for (let y = ys[0]; y <= ys[1]; y++) {
      for (let x = xs[0]; x <= xs[1]; x++) {
        const px = x + 0.5, py = y + 0.5;
        const t = length2 ? Math.min(1, Math.max(0, ((px - x0) * dx + (py - y0) * dy) / length2)) : 0;
        const ex = x0 + t * dx - px, ey = y0 + t * dy - py;
        if (ex * ex + ey * ey <= r * r) state.mask[y * width + x] = value;
      }
    }
  }

  function undo() {
    if (!state.undo.length) return message("Nothing to undo.");
    state.mask = state.undo.pop();
    changed();
  }

  function clearMarks() {
    if (!markedCount()) return;
    pushUndo();
    state.mask.fill(0);
    changed();
  }

  function changed() {
    message("");
    scheduleRender();
  }

  // -- drawing -----------------------------------------------------------------------------------

  const zoomFor = (width, height) => Math.max(1, Math.floor(DISPLAY_SIZE / Math.max(width, height)));

  // Region borders along pixel edges, at display scale: candidate regions strong, others weak.
  function outlines({ segments, candidates, width, height }) {
    const z = zoomFor(width, height);
    const candidate = new Set(candidates);
    const strong = new Path2D(), weak = new Path2D();
    const edge = (path, xa, ya, xb, yb) => { path.moveTo(xa * z, ya * z); path.lineTo(xb * z, yb * z); };
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const s = segments[y * width + x];
        if (x + 1 < width && segments[y * width + x + 1] !== s) {
          edge(candidate.has(s) || candidate.has(segments[y * width + x + 1]) ? strong : weak, x + 1, y, x + 1, y + 1);
        }
        if (y + 1 < height && segments[(y + 1) * width + x] !== s) {
          edge(candidate.has(s) || candidate.has(segments[(y + 1) * width + x]) ? strong : weak, x, y + 1, x + 1, y + 1);
        }
        if (candidate.has(s)) {
          if (x === 0) edge(strong, 0, y, 0, y + 1);
          if (x === width - 1) edge(strong, width, y, width, y + 1);
          if (y === 0) edge(strong, x, 0, x + 1, 0);
          if (y === height - 1) edge(strong, x, height, x + 1, height);
        }
      }
    }
    return { strong, weak };
  }

  function stripes() {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const t = tile.getContext("2d");
    t.fillStyle = "rgba(46, 160, 67, 0.55)";
    t.fillRect(0, 0, 8, 8);
    t.strokeStyle = "rgba(255, 255, 255, 0.85)";
    t.lineWidth = 2;
    t.beginPath();
    t.moveTo(-2, 10); t.lineTo(10, -2);
    t.moveTo(-2, 2); t.lineTo(2, -2);
    t.moveTo(6, 10); t.lineTo(10, 6);
    t.stroke();
    return ctx.createPattern(tile, "repeat");
  }
  const STRIPES = stripes();

  function drawMask(width, height, w, h) {
    const small = maskPixels.getContext("2d");
    const pixels = small.createImageData(width, height);
    state.mask.forEach((v, i) => { if (v) pixels.data[4 * i + 3] = 255; });
    small.putImageData(pixels, 0, 0);
    const layer = maskLayer.getContext("2d");
    layer.globalCompositeOperation = "source-over";
    layer.imageSmoothingEnabled = false;
    layer.clearRect(0, 0, w, h);
    layer.drawImage(maskPixels, 0, 0, w, h);
    layer.globalCompositeOperation = "source-in";
    layer.fillStyle = STRIPES;
    layer.fillRect(0, 0, w, h);
    ctx.drawImage(maskLayer, 0, 0);
  }

  function render() {
    const { data, image, heat } = state.item;
    const w = data.width * state.zoom, h = data.height * state.zoom;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(image, 0, 0, w, h);
    if ($("show-heatmap").checked) {
      ctx.globalAlpha = $("heat-opacity").value / 100;
      ctx.drawImage(heat, 0, 0, w, h);
      ctx.globalAlpha = 1;
    }
    drawMask(data.width, data.height, w, h);
    if ($("show-outlines").checked) {
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.35)";
      ctx.stroke(state.item.outlines.weak);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#ffd33d";
      ctx.stroke(state.item.outlines.strong);
    }
    if (state.pointer && state.tool !== "region") {
      ctx.beginPath();
      ctx.arc(state.pointer[0] * state.zoom, state.pointer[1] * state.zoom, state.brushSize / 2 * state.zoom, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = state.tool === "brush" ? "#2ea043" : "#ffffff";
      ctx.stroke();
    }
    showAnswerStatus();
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; if (state.item) render(); });
  }

  // -- panel -------------------------------------------------------------------------------------

  function message(text) { $("message").textContent = text; }

  const percent = (p) => `${(100 * p).toFixed(1)}%`;

  function showPrediction(data) {
    const p = data.prediction;
    $("item-position").textContent = `(image ${data.position + 1} of ${data.total}, #${data.index})`;
    $("predicted").innerHTML = "";
    $("predicted").append("Prediction: ", Object.assign(document.createElement("b"), { textContent: p.predicted_name }),
      ` (${percent(p.probs[p.predicted])})`);
    $("label").textContent = p.label === null ? "True label: unknown"
      : `True label: ${p.label_name}${p.label === p.predicted ? " (correct)" : " (the prediction is wrong)"}`;
    $("bars").replaceChildren(...p.top.map(({ class: k, name, prob }) => {
      const row = document.createElement("li");
      if (k === p.label) row.className = "true-class";
      row.innerHTML = '<span class="name"></span><span class="bar"><span></span></span><span class="value"></span>';
      row.querySelector(".name").textContent = name;
      row.querySelector(".bar span").style.width = percent(prob);
      row.querySelector(".value").textContent = percent(prob);
      return row;
    }));
    $("entropy").textContent = `${p.entropy.toFixed(3)} nats`;
    $("mutual-information").textContent = `${p.mutual_information.toFixed(3)} nats`;
    $("legend").textContent = (data.heatmap.signed
      ? "Explanation: red = evidence for the prediction, blue = evidence against; "
      : "Explanation: brighter = more important to the prediction; ")
      + "yellow outlines = candidate regions; green stripes = marked irrelevant.";
    $("previous").disabled = data.previous === null;
    $("next").disabled = data.next === null;
  }

  function showAnswerStatus() {
    const answer = state.item.data.answer;
    const saved = !answer ? "Not answered yet."
      : answer.decision === "irrelevant" ? "Saved: regions marked irrelevant."
      : answer.decision === "accepted" ? "Saved: the explanation is fine."
      : "Saved: skipped.";
    const count = markedCount();
    const changes = unsaved() ? " Unsaved changes to the marks." : "";
    $("saved-status").textContent = `${saved} ${count} pixel${count === 1 ? "" : "s"} marked.${changes}`;
    $("saved-status").classList.toggle("unsaved", Boolean(changes));
    document.body.dataset.marked = String(count);
  }

  function showProgress() {
    const { answered, total, counts } = state.progress;
    $("progress-text").textContent = `${answered} of ${total} answered (${counts.irrelevant} with irrelevant regions, `
      + `${counts.accepted} fine, ${counts.skipped} skipped)`;
    $("progress-fill").style.width = `${(100 * answered) / total}%`;
  }

  function showFinished() {
    stashDraft();
    state.item = null;
    $("work").hidden = true;
    $("finished").hidden = false;
    const { total, counts } = state.progress;
    $("finished-summary").textContent = `All ${total} images have an answer: ${counts.irrelevant} with regions marked `
      + `irrelevant, ${counts.accepted} with a fine explanation, ${counts.skipped} skipped. They are saved in ${state.store}.`;
    const step = $("next-step");
    step.replaceChildren();
    if (state.nextCommand) {
      step.append(Object.assign(document.createElement("p"), { textContent: "Next, run:" }),
        Object.assign(document.createElement("pre"), { id: "next-command", textContent: state.nextCommand }));
    } else {
      step.append(Object.assign(document.createElement("p"), { textContent: "You can close this page." }));
    }
    document.body.dataset.index = "finished";
  }

  // -- navigation and answers --------------------------------------------------------------------

  function stashDraft() {
    if (!state.item) return;
    const index = state.item.data.index;
    if (unsaved()) drafts.set(index, { mask: state.mask, undo: state.undo });
    else drafts.delete(index);
  }

  async function go(index, started = performance.now()) {
    const navigation = ++state.navigation;
    stashDraft();
    let item;
    try {
      item = await load(index);
    } catch (error) {
      return message(`Cannot load image ${index}: ${error.message}`);
    }
    if (navigation !== state.navigation) return;  // a later click won
    const { data } = item;
    const draft = drafts.get(index);
    Object.assign(state, { item, mask: draft ? draft.mask : savedMask(data), undo: draft ? draft.undo : [],
      zoom: zoomFor(data.width, data.height), stroke: null });
    canvas.width = maskLayer.width = data.width * state.zoom;
    canvas.height = maskLayer.height = data.height * state.zoom;
    maskPixels.width = data.width;
    maskPixels.height = data.height;
    $("finished").hidden = true;
    $("work").hidden = false;
    history.replaceState(null, "", `${location.pathname}${location.search}#item=${index}`);
    message("");
    showPrediction(data);
    render();
    canvas.dataset.showMs = (performance.now() - started).toFixed(1);
    document.body.dataset.index = String(index);
    prefetch(data.next);
    prefetch(nextUnanswered(index));
  }

  function nextUnanswered(after) {
    const start = state.items.findIndex((it) => it.index === after);
    for (let k = 1; k <= state.items.length; k++) {
      const it = state.items[(start + k) % state.items.length];
      if (it.decision === null) return it.index;
    }
    return null;
  }

  async function submit(decision) {
    if (!state.item || state.busy) return;
    const started = performance.now();
    const { index, height, width } = state.item.data;
    const body = { decision };
    if (decision === "irrelevant") {
      if (!markedCount()) return message("Mark at least one region first, or press \u201cExplanation is fine\u201d.");
      body.mask = encodeMask(state.mask, height, width);
    }
    state.busy = true;
    try {
      const response = await api(`/api/items/${index}/answer`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const result = await response.json();
      state.item.data.answer = result.answer;
      if (decision !== "irrelevant") state.mask = savedMask(state.item.data);
      drafts.delete(index);
      state.items.find((it) => it.index === index).decision = decision;
      state.progress = result.progress;
      showProgress();
      if (result.next_unanswered === null) showFinished();
      else await go(result.next_unanswered, started);
    } catch (error) {
      message(`Not saved: ${error.message}`);
    } finally {
      state.busy = false;
    }
  }

  function step(direction) {
    if (!state.item) return;
    const target = direction > 0 ? state.item.data.next : state.item.data.previous;
    if (target !== null) go(target);
  }

  // -- input -------------------------------------------------------------------------------------

  function toImage(event) {
    const rect = canvas.getBoundingClientRect();
    const { width, height } = state.item.data;
    return [(event.clientX - rect.left) / rect.width * width, (event.clientY - rect.top) / rect.height * height];
  }

  function setTool(tool) {
    state.tool = tool;
    document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
    canvas.classList.toggle("painting", tool !== "region");
    scheduleRender();
  }

  function setBrushSize(size) {
    const slider = $("brush-size");
    state.brushSize = Math.min(Number(slider.max), Math.max(Number(slider.min), size));
    slider.value = String(state.brushSize);
    $("brush-size-value").textContent = String(state.brushSize);
    scheduleRender();
  }

  function toggle(id) {
    $(id).checked = !$(id).checked;
    scheduleRender();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!state.item || event.button !== 0) return;
    const point = toImage(event);
    if (state.tool === "region") return toggleRegion(point);
    canvas.setPointerCapture(event.pointerId);
    pushUndo();
    state.stroke = { last: point, value: state.tool === "brush" ? 1 : 0 };
    paint(point, point, state.stroke.value);
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.item) return;
    state.pointer = toImage(event);
    if (state.stroke) {
      paint(state.stroke.last, state.pointer, state.stroke.value);
      state.stroke.last = state.pointer;
    }
    scheduleRender();
  });
  const endStroke = () => { state.stroke = null; };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("pointerleave", () => { state.pointer = null; if (state.item) scheduleRender(); });

  document.querySelectorAll("input[name=tool]").forEach((radio) => radio.addEventListener("change", () => setTool(radio.value)));
  $("brush-size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
  ["show-heatmap", "heat-opacity", "show-outlines"].forEach((id) => $(id).addEventListener("input", scheduleRender));
  $("save").addEventListener("click", () => submit("irrelevant"));
  $("accept-candidates").addEventListener("click", acceptCandidates);
  $("fine").addEventListener("click", () => submit("accepted"));
  $("skip").addEventListener("click", () => submit("skipped"));
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearMarks);
  $("previous").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("review").addEventListener("click", () => go(state.items[0].index));

  // A button clicked with the mouse gives the focus back, so that Enter keeps meaning "save".
  document.querySelectorAll("button").forEach((button) => button.addEventListener("click", (event) => {
    if (event.detail > 0) button.blur();
  }));

  const SHORTCUTS = {
    r: () => setTool("region"), b: () => setTool("brush"), e: () => setTool("eraser"),
    "[": () => setBrushSize(state.brushSize - 1), "]": () => setBrushSize(state.brushSize + 1),
    a: acceptCandidates, Enter: () => submit("irrelevant"), f: () => submit("accepted"), s: () => submit("skipped"),
    z: undo, c: clearMarks, h: () => toggle("show-heatmap"), o: () => toggle("show-outlines"),
    n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
  };

  document.addEventListener("keydown", (event) => {
    if (!state.item || event.altKey || event.target.matches("textarea, input[type=text]")) return;
    if (event.target.matches("button") && (event.key === "Enter" || event.key === " ")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      return undo();
    }
    if (event.ctrlKey || event.metaKey) return;
    const action = SHORTCUTS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // -- start -------------------------------------------------------------------------------------

  async function start() {
    try {
      const overview = await (await api("/api/items")).json();
      Object.assign(state, { items: overview.items, progress: overview.progress, nextCommand: overview.next_command,
        store: overview.store });
      $("who").textContent = `Annotator: ${overview.annotator}`;
      showProgress();
      const requested = Number((location.hash.match(/^#item=(\d+)$/) || [])[1]);
      if (state.items.some((it) => it.index === requested)) return go(requested);
      const first = state.items.find((it) => it.decision === null);
      if (first) return go(first.index);
      showFinished();
    } catch (error) {
      $("work").hidden = true;
      $("failure").hidden = false;
      $("failure-text").textContent = error.message;
    }
  }

  start();
})();
