// The annotation page: shows one image at a time with the model's prediction and explanation,
// lets the annotator mark irrelevant regions (proposed regions, brush, eraser) and saves each
// answer through the JSON API. Masks are Uint8Arrays of height * width, row-major, 1 = irrelevant.
// Marks not saved yet are kept in localStorage (per store, annotator and image) until they are
// saved or cleared, so that a reload, a closed tab or a restarted server loses none of them; the
// shown image is in the address (#item=N), so back, forward and reload land on it.
"use strict";

(() => {
  const { AUTH, encodeMask, decodeMask, markTools } = window.PyroEbnn;
  const DISPLAY_SIZE = 448;  // the longer side of the image on screen, in CSS pixels
  const MAX_UNDO = 100;
  const MAX_VIEW_ZOOM = 8;   // magnification on top of the fitted image
  const ZOOM_STEP = 1.5;     // per button press or key; the wheel zooms by 1.25 per notch

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
    item: null,         // {data, image, heat, outlines}
    mask: null,
    undo: [],
    redo: [],
    tool: "region",
    brushSize: 3,
    stroke: null,       // {last: [x, y], value} while the brush or eraser is down
    pointer: null,      // [x, y] in image pixels, for the brush outline
    zoom: 1,           // canvas pixels per image pixel when the whole image is shown
    view: { scale: 1, x: 0, y: 0 },  // magnification and the canvas offset of the shown part
    pan: null,         // {from: [x, y], x, y} while the view is dragged
    spaceHeld: false,
    busy: false,
    navigation: 0,
    annotator: "",
    startCommand: null,
    offline: false,    // the last request found no server
  };
  const loaded = new Map();  // index -> Promise of an item
  const drafts = new Map();  // index -> {mask, undo, redo}: marks not saved yet, in this tab

  // -- server ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  function serverGone() {
    const command = state.startCommand || "the annotate command that started it";
    return new ApiError(`the server is not running: start it again with ${command} (this page keeps your `
      + "unsaved marks and carries on once it answers)", 0);
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...AUTH, ...(options.headers || {}) } });
    } catch (_) {
      state.offline = true;
      throw serverGone();
    }
    if (state.offline) {
      state.offline = false;
      refreshItems();
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      throw new ApiError(message, response.status);
    }
    return response;
  }

  // The list of images again, after the server was gone (it may have restarted with other images).
  async function refreshItems() {
    try {
      const overview = await (await api("/api/items")).json();
      Object.assign(state, { items: overview.items, progress: overview.progress });
      loaded.clear();
      showProgress();
      showJumpList();
      if (state.item && !state.items.some((it) => it.index === state.item.data.index)) {
        message(`Image ${state.item.data.index} is not among the images the server shows now; pick one from the list.`);
      }
    } catch (_) { /* shown by the request that failed */ }
  }

  async function bitmap(path) {
    return createImageBitmap(await (await api(path)).blob());
  }

  function load(index) {
    if (!loaded.has(index)) {
      const base = `/api/items/${index}`;
      const item = Promise.all([api(base).then((r) => r.json()), bitmap(`${base}/image.png`), bitmap(`${base}/heatmap.png`)])
        .then(([data, image, heat]) => ({ data, image, heat, outlines: outlines(data) }));
      item.catch(() => loaded.delete(index));
      loaded.set(index, item);
    }
    return loaded.get(index);
  }

  function prefetch(index) {
    if (index !== null && index !== undefined) load(index).catch(() => {});
  }

  // -- masks -------------------------------------------------------------------------------------

  function savedMask(data) {
    const answer = data.answer;
    return answer && answer.mask ? decodeMask(answer.mask) : new Uint8Array(data.width * data.height);
  }

  const sameMask = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const unsaved = () => !sameMask(state.mask, savedMask(state.item.data));

  const NO_PROPOSAL = "No proposal on this image: no region of the explanation is strong enough to propose. "
    + "Mark regions by hand (R, B), or accept the explanation.";
  const tools = markTools({ state, data: () => state.item.data, changed, message, noProposal: NO_PROPOSAL, maxUndo: MAX_UNDO });
  const { marked: markedCount, toggleRegion, markProposals, startStroke, continueStroke, undo, redo,
    clear: clearMarks } = tools;

  function changed() {
    message("");
    keepDraft();
    scheduleRender();
  }

  // -- unsaved marks, kept in the browser ----------------------------------------------------------

  const draftKey = (index) => `pyro-ebnn-annotate:${state.store}:${state.annotator}:${index}`;

  function storage(action) {
    try { return action(window.localStorage); } catch (_) { return null; }  // disabled or full: this tab only
  }

  // Writes the current image's marks to localStorage when they differ from its saved answer.
  function keepDraft() {
    if (!state.item) return;
    const { index, height, width } = state.item.data;
    const key = draftKey(index);
    if (unsaved()) storage((s) => s.setItem(key, JSON.stringify(encodeMask(state.mask, height, width))));
    else storage((s) => s.removeItem(key));
    showJumpEntry(index);
  }

  function keptDraft(data) {
    const kept = storage((s) => JSON.parse(s.getItem(draftKey(data.index))));
    if (!kept || !Array.isArray(kept.shape) || kept.shape[0] !== data.height || kept.shape[1] !== data.width) return null;
    const mask = decodeMask(kept);
    return sameMask(mask, savedMask(data)) ? null : mask;
  }

  function forgetDraft(index) {
    drafts.delete(index);
    storage((s) => s.removeItem(draftKey(index)));
  }

  const hasDraft = (index) => drafts.has(index) || storage((s) => s.getItem(draftKey(index))) !== null;

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

  // The marked pixels, zoomed like the image, filled with stripes of a constant size on screen.
  function drawMask(width, height, w, h) {
    const small = maskPixels.getContext("2d");
    const pixels = small.createImageData(width, height);
    state.mask.forEach((v, i) => { if (v) pixels.data[4 * i + 3] = 255; });
    small.putImageData(pixels, 0, 0);
    const layer = maskLayer.getContext("2d");
    const { scale, x, y } = state.view;
    layer.setTransform(1, 0, 0, 1, 0, 0);
    layer.globalCompositeOperation = "source-over";
    layer.imageSmoothingEnabled = false;
    layer.clearRect(0, 0, w, h);
    layer.setTransform(scale, 0, 0, scale, -x, -y);
    layer.drawImage(maskPixels, 0, 0, w, h);
    layer.setTransform(1, 0, 0, 1, 0, 0);
    layer.globalCompositeOperation = "source-in";
    layer.fillStyle = STRIPES;
    layer.fillRect(0, 0, w, h);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(maskLayer, 0, 0);
    ctx.setTransform(scale, 0, 0, scale, -x, -y);
  }

  function render() {
    const { data, image, heat } = state.item;
    const w = data.width * state.zoom, h = data.height * state.zoom;
    const { scale, x, y } = state.view;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, w, h);
    ctx.setTransform(scale, 0, 0, scale, -x, -y);  // the zoomed and panned view of the fitted image
    ctx.drawImage(image, 0, 0, w, h);
    if ($("show-heatmap").checked) {
      ctx.globalAlpha = $("heat-opacity").value / 100;
      ctx.drawImage(heat, 0, 0, w, h);
      ctx.globalAlpha = 1;
    }
    drawMask(data.width, data.height, w, h);
    if ($("show-outlines").checked) {
      ctx.lineWidth = 1 / scale;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.35)";
      ctx.stroke(state.item.outlines.weak);
      ctx.lineWidth = 2 / scale;
      ctx.strokeStyle = "#ffd33d";
      ctx.stroke(state.item.outlines.strong);
    }
    if (state.pointer && state.tool !== "region" && !state.pan) {
      ctx.beginPath();
      ctx.arc(state.pointer[0] * state.zoom, state.pointer[1] * state.zoom, state.brushSize / 2 * state.zoom, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5 / scale;
      ctx.strokeStyle = state.tool === "brush" ? "#2ea043" : "#ffffff";
      ctx.stroke();
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    canvas.dataset.view = [scale, x, y].map((v) => v.toFixed(2)).join(",");
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
      + "yellow outlines = proposals (regions the explanation points at); green stripes = marked irrelevant.";
    $("previous").disabled = data.previous === null;
    $("next").disabled = data.next === null;
    const noProposal = data.candidates.length === 0;
    $("mark-proposals").disabled = noProposal;
    $("proposals-note").hidden = !noProposal;
    $("proposals-note").textContent = noProposal ? NO_PROPOSAL : "";
    document.dispatchEvent(new CustomEvent("annotate:item", { detail: data }));  // for explain.js
  }

  function showAnswerStatus() {
    const answer = state.item.data.answer;
    const saved = !answer ? "Not answered yet."
      : answer.decision === "irrelevant" ? "Saved: regions marked irrelevant."
      : answer.decision === "accepted" ? "Saved: the explanation is accepted."
      : "Saved: skipped.";
    const count = markedCount();
    const changes = unsaved() ? " Unsaved changes to the marks (kept in this browser until you save or clear them)." : "";
    $("saved-status").textContent = `${saved} ${count} pixel${count === 1 ? "" : "s"} marked.${changes}`;
    $("saved-status").classList.toggle("unsaved", Boolean(changes));
    $("undo").disabled = !state.undo.length;
    $("redo").disabled = !state.redo.length;
    document.body.dataset.marked = String(count);
  }

  function showProgress() {
    const { answered, total, counts } = state.progress;
    $("progress-text").textContent = `${answered} of ${total} answered (${counts.irrelevant} with irrelevant regions, `
      + `${counts.accepted} accepted, ${counts.skipped} skipped)`;
    $("progress-fill").style.width = `${(100 * answered) / total}%`;
  }

  // The list to jump to any image, with its state: not answered, the saved decision, unsaved marks.
  const DECISION_LABELS = { irrelevant: "irrelevant regions saved", accepted: "explanation accepted", skipped: "skipped" };

  function jumpLabel(it, position) {
    const decision = it.decision === null ? "not answered" : DECISION_LABELS[it.decision];
    return `${position + 1}. image #${it.index}: ${decision}${hasDraft(it.index) ? ", unsaved marks" : ""}`;
  }

  function showJumpList() {
    const list = $("jump");
    list.replaceChildren(...state.items.map((it, k) => {
      const option = new Option(jumpLabel(it, k), String(it.index));
      option.dataset.decision = it.decision || "none";
      return option;
    }));
    if (state.item) list.value = String(state.item.data.index);
  }

  function showJumpEntry(index) {
    const k = state.items.findIndex((it) => it.index === index);
    const option = $("jump").options[k];
    if (!option) return;
    option.textContent = jumpLabel(state.items[k], k);
    option.dataset.decision = state.items[k].decision || "none";
  }

  function showFinished() {
    stashDraft();
    state.item = null;
    $("work").hidden = true;
    $("finished").hidden = false;
    const { total, counts } = state.progress;
    $("finished-summary").textContent = `All ${total} images have an answer: ${counts.irrelevant} with regions marked `
      + `irrelevant, ${counts.accepted} with the explanation accepted, ${counts.skipped} skipped. They are saved in ${state.store}.`;
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
    if (unsaved()) drafts.set(index, { mask: state.mask, undo: state.undo, redo: state.redo });
    else drafts.delete(index);
  }

  const hashIndex = () => {
    const found = location.hash.match(/^#item=(\d+)$/);
    return found ? Number(found[1]) : null;
  };

  // Shows image `index`; `push` adds it to the browser's history (back returns to the image before).
  async function go(index, { started = performance.now(), push = true } = {}) {
    const navigation = ++state.navigation;
    stashDraft();
    let item;
    try {
      item = await load(index);
    } catch (error) {
      if (error.status === 404) refreshItems();
      return message(error.status === 0 ? `Cannot show image ${index}: ${error.message}`
        : `Cannot load image ${index}: ${error.message}`);
    }
    if (navigation !== state.navigation) return;  // a later click won
    const { data } = item;
    const draft = drafts.get(index);
    const kept = draft ? null : keptDraft(data);
    Object.assign(state, { item, mask: draft ? draft.mask : kept || savedMask(data), undo: draft ? draft.undo : [],
      redo: draft ? draft.redo : [], zoom: zoomFor(data.width, data.height), stroke: null, pan: null,
      view: { scale: 1, x: 0, y: 0 } });
    canvas.width = maskLayer.width = data.width * state.zoom;
    canvas.height = maskLayer.height = data.height * state.zoom;
    maskPixels.width = data.width;
    maskPixels.height = data.height;
    $("finished").hidden = true;
    $("work").hidden = false;
    if (hashIndex() !== index) {
      const url = `${location.pathname}${location.search}#item=${index}`;
      if (push) history.pushState(null, "", url);
      else history.replaceState(null, "", url);
    }
    message(kept ? "Your unsaved marks on this image were restored from this browser: save them, or clear them." : "");
    showPrediction(data);
    $("jump").value = String(index);
    $("zoom-level").textContent = "100%";
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
      if (!markedCount()) return message("Mark at least one region first, or accept the explanation (F).");
      body.mask = encodeMask(state.mask, height, width);
    }
    state.busy = true;
    try {
      const response = await api(`/api/items/${index}/answer`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const result = await response.json();
      state.item.data.answer = result.answer;
      if (decision !== "irrelevant") state.mask = savedMask(state.item.data);
      forgetDraft(index);
      const listed = state.items.find((it) => it.index === index);
      if (listed) listed.decision = decision;
      showJumpEntry(index);
      state.progress = result.progress;
      showProgress();
      if (result.next_unanswered === null) showFinished();
      else await go(result.next_unanswered, { started });
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

  function toCanvas(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width * canvas.width, (event.clientY - rect.top) / rect.height * canvas.height];
  }

  function toImage(event) {
    const [cx, cy] = toCanvas(event);
    const { scale, x, y } = state.view;
    return [(cx + x) / scale / state.zoom, (cy + y) / scale / state.zoom];
  }

  // The view stays inside the image: offsets between 0 and the zoomed size minus the canvas.
  function clampView({ scale, x, y }) {
    const maxX = canvas.width * (scale - 1), maxY = canvas.height * (scale - 1);
    return { scale, x: Math.min(maxX, Math.max(0, x)), y: Math.min(maxY, Math.max(0, y)) };
  }

  // Zoom to `scale` (1 = the whole image) keeping the canvas point (cx, cy) where it is.
  function zoomTo(scale, cx = canvas.width / 2, cy = canvas.height / 2) {
    if (!state.item) return;
    const old = state.view;
    const next = Math.min(MAX_VIEW_ZOOM, Math.max(1, scale));
    state.view = clampView({ scale: next, x: (cx + old.x) * next / old.scale - cx, y: (cy + old.y) * next / old.scale - cy });
    $("zoom-level").textContent = `${Math.round(next * 100)}%`;
    scheduleRender();
  }

  function setTool(tool) {
    state.tool = tool;
    document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
    canvas.classList.toggle("painting", tool !== "region");
    scheduleRender();
  }

  function setBrushSize(size) {
    window.PyroEbnn.setBrushSize(state, size);
    scheduleRender();
  }

  function toggle(id) {
    $(id).checked = !$(id).checked;
    scheduleRender();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!state.item) return;
    if (event.button === 1 || event.button === 2 || (event.button === 0 && state.spaceHeld)) {
      event.preventDefault();  // pan: the middle or right button, or Space and the left button
      canvas.setPointerCapture(event.pointerId);
      state.pan = { from: toCanvas(event), x: state.view.x, y: state.view.y };
      canvas.classList.add("panning");
      return;
    }
    if (event.button !== 0) return;
    const point = toImage(event);
    if (state.tool === "region") return toggleRegion(point);
    canvas.setPointerCapture(event.pointerId);
    startStroke(point);
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.item) return;
    if (state.pan) {
      const [cx, cy] = toCanvas(event);
      const { from, x, y } = state.pan;
      state.view = clampView({ scale: state.view.scale, x: x - (cx - from[0]), y: y - (cy - from[1]) });
      return scheduleRender();
    }
    state.pointer = toImage(event);
    if (state.stroke) {
      continueStroke(state.pointer);
    }
    scheduleRender();
  });
  const endStroke = () => {
    if (state.stroke) keepDraft();
    state.stroke = null;
    state.pan = null;
    canvas.classList.toggle("panning", state.spaceHeld);
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("pointerleave", () => { state.pointer = null; if (state.item) scheduleRender(); });
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("wheel", (event) => {
    if (!state.item) return;
    event.preventDefault();
    zoomTo(state.view.scale * (event.deltaY < 0 ? 1.25 : 0.8), ...toCanvas(event));
  }, { passive: false });

  document.querySelectorAll("input[name=tool]").forEach((radio) => radio.addEventListener("change", () => setTool(radio.value)));
  $("brush-size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
  ["show-heatmap", "heat-opacity", "show-outlines"].forEach((id) => $(id).addEventListener("input", scheduleRender));
  $("save").addEventListener("click", () => submit("irrelevant"));
  $("mark-proposals").addEventListener("click", markProposals);
  $("accept").addEventListener("click", () => submit("accepted"));
  $("skip").addEventListener("click", () => submit("skipped"));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", clearMarks);
  $("zoom-in").addEventListener("click", () => zoomTo(state.view.scale * ZOOM_STEP));
  $("zoom-out").addEventListener("click", () => zoomTo(state.view.scale / ZOOM_STEP));
  $("zoom-fit").addEventListener("click", () => zoomTo(1));
  $("previous").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("jump").addEventListener("change", (event) => {
    go(Number(event.target.value));
    event.target.blur();  // the shortcuts work again
  });
  $("review").addEventListener("click", () => go(state.items[0].index));

  // Back, forward, or an address typed with another #item=N: show that image.
  function followAddress() {
    const requested = hashIndex();
    if (requested === null || (state.item && state.item.data.index === requested) || !state.items.length) return;
    if (state.items.some((it) => it.index === requested)) go(requested, { push: false });
    else message(`There is no image ${requested} on this page; choose one from the list.`);
  }
  window.addEventListener("popstate", followAddress);
  window.addEventListener("hashchange", followAddress);

  // Unsaved marks survive in localStorage anyway; the browser still asks before the tab closes.
  window.addEventListener("beforeunload", (event) => {
    stashDraft();
    if (drafts.size) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // A button clicked with the mouse gives the focus back, so that Enter keeps meaning "save".
  document.querySelectorAll("button").forEach((button) => button.addEventListener("click", (event) => {
    if (event.detail > 0) button.blur();
  }));

  const SHORTCUTS = {
    r: () => setTool("region"), b: () => setTool("brush"), e: () => setTool("eraser"),
    "[": () => setBrushSize(state.brushSize - 1), "]": () => setBrushSize(state.brushSize + 1),
    a: markProposals, Enter: () => submit("irrelevant"), f: () => submit("accepted"), s: () => submit("skipped"),
    z: undo, y: redo, c: clearMarks, h: () => toggle("show-heatmap"), o: () => toggle("show-outlines"),
    "+": () => zoomTo(state.view.scale * ZOOM_STEP), "=": () => zoomTo(state.view.scale * ZOOM_STEP),
    "-": () => zoomTo(state.view.scale / ZOOM_STEP), 0: () => zoomTo(1),
    n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
  };

  document.addEventListener("keyup", (event) => {
    if (event.key !== " ") return;
    state.spaceHeld = false;
    if (!state.pan) canvas.classList.remove("panning");
  });

  document.addEventListener("keydown", (event) => {
    if (!state.item || event.altKey || event.target.matches("textarea, input[type=text], select")) return;
    if (event.target.matches("button") && (event.key === "Enter" || event.key === " ")) return;
    if (event.key === " ") {  // held: the left button pans
      event.preventDefault();
      state.spaceHeld = true;
      return canvas.classList.add("panning");
    }
    if ((event.ctrlKey || event.metaKey) && (event.key.toLowerCase() === "y"
        || (event.key.toLowerCase() === "z" && event.shiftKey))) {
      event.preventDefault();
      return redo();
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      return undo();
    }
    if (event.ctrlKey || event.metaKey) return;
    window.PyroEbnn.runShortcut(SHORTCUTS, event);
  });

  // -- start -------------------------------------------------------------------------------------

  async function start() {
    try {
      const overview = await (await api("/api/items")).json();
      Object.assign(state, { items: overview.items, progress: overview.progress, nextCommand: overview.next_command,
        store: overview.store, annotator: overview.annotator, startCommand: overview.start_command });
      $("who").textContent = `Annotator: ${overview.annotator}`;
      showProgress();
      showJumpList();
      const requested = hashIndex();
      if (state.items.some((it) => it.index === requested)) return go(requested, { push: false });
      const first = state.items.find((it) => it.decision === null);
      if (first) return go(first.index, { push: false });
      showFinished();
    } catch (error) {
      $("work").hidden = true;
      $("failure").hidden = false;
      $("failure-text").textContent = error.message;
    }
  }

  start();
})();
