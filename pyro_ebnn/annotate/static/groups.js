// The discovery view: the groups of images whose explanations look alike, best first. The person
// marks a region once on a group's mean map (or on one of its images) with the page's tools
// (click a proposed region, brush, eraser) and saves it for the whole group; the server propagates
// it (same place, or wherever it looks the same) and lists every propagated mask, which one action
// undoes together with the answer. Masks are Uint8Arrays of height * width, 1 = irrelevant, sent
// packed as base64 bits (common.js). Unsaved marks stay in localStorage per group and image.
"use strict";

(() => {
  const { AUTH, withToken, encodeMask, decodeMask, markTools } = window.PyroEbnn;
  const DISPLAY_SIZE = 448;
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const small = document.createElement("canvas");  // the mask at the image's resolution

  const state = {
    groups: [], group: null, view: null, mask: null, undo: [], redo: [], tool: "region", brushSize: 3, stroke: null,
    zoom: 1, busy: false, store: "", annotator: "", features: false,
  };

  // -- server ------------------------------------------------------------------------------------

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...AUTH, ...(options.headers || {}) } });
    } catch (_) {
      throw new Error("the server is not running: start the annotate command again (unsaved marks stay in this browser)");
    }
    if (!response.ok) {
      let text = `${response.status} ${response.statusText}`;
      try { text = (await response.json()).error || text; } catch (_) { /* not JSON */ }
      throw new Error(text);
    }
    return response.json();
  }

  function bitmap(path) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error(`cannot load ${path}`));
      image.src = withToken(path);
    });
  }

  // -- masks -------------------------------------------------------------------------------------

  const source = () => (state.view && state.view.kind === "image" ? state.view.index : null);
  const draftKey = () => `pyro-ebnn-groups:${state.store}:${state.annotator}:${state.group.key}:${source()}`;

  function storage(action) {
    try { return action(window.localStorage); } catch (_) { return null; }
  }

  function keepDraft() {
    const { height, width } = state.view.data;
    if (marked()) storage((s) => s.setItem(draftKey(), JSON.stringify(encodeMask(state.mask, height, width))));
    else storage((s) => s.removeItem(draftKey()));
  }

  function keptDraft(data) {
    const kept = storage((s) => JSON.parse(s.getItem(draftKey())));
    return kept && kept.shape[0] === data.height && kept.shape[1] === data.width ? decodeMask(kept) : null;
  }

  function changed() {
    message("");
    keepDraft();
    render();
  }

  const tools = markTools({ state, data: () => state.view.data, changed, message,
    noProposal: "No region is proposed here; paint with the brush (B)." });
  const { marked, toggleRegion, markProposals, startStroke, continueStroke, undo, redo,
    clear: clearMarks } = tools;

  // -- drawing -----------------------------------------------------------------------------------

  function outlines({ segments, candidates, width, height }, z) {
    const candidate = new Set(candidates);
    const path = new Path2D();
    const edge = (xa, ya, xb, yb) => { path.moveTo(xa * z, ya * z); path.lineTo(xb * z, yb * z); };
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const s = segments[y * width + x];
        const right = x + 1 < width ? segments[y * width + x + 1] : -1;
        const below = y + 1 < height ? segments[(y + 1) * width + x] : -1;
        if (right !== s && (candidate.has(s) || candidate.has(right))) edge(x + 1, y, x + 1, y + 1);
        if (below !== s && (candidate.has(s) || candidate.has(below))) edge(x, y + 1, x + 1, y + 1);
        if (candidate.has(s) && x === 0) edge(0, y, 0, y + 1);
        if (candidate.has(s) && y === 0) edge(x, 0, x + 1, 0);
      }
    }
    return path;
  }

  function render() {
    const { data, image, heat, path } = state.view;
    const w = data.width * state.zoom, h = data.height * state.zoom;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(image, 0, 0, w, h);
    if ($("show-heatmap").checked) {
      ctx.globalAlpha = 0.6;
      ctx.drawImage(heat, 0, 0, w, h);
      ctx.globalAlpha = 1;
    }
    const pixels = small.getContext("2d").createImageData(data.width, data.height);
    state.mask.forEach((v, i) => {
      if (v) pixels.data.set([46, 160, 67, 190], 4 * i);
    });
    small.getContext("2d").putImageData(pixels, 0, 0);
    ctx.drawImage(small, 0, 0, w, h);
    if ($("show-outlines").checked) {
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#ffd33d";
      ctx.stroke(path);
    }
    canvas.dataset.marked = String(marked());
  }

  function message(text, ok = false) {
    $("message").textContent = text;
    $("message").classList.toggle("ok", ok);
  }

  // -- groups ------------------------------------------------------------------------------------

  const number = (v) => v.toFixed(2);

  function showList() {
    $("group-list").replaceChildren(...state.groups.map((g, k) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.key = g.key;
      button.className = state.group && state.group.key === g.key ? "current" : "";
      const answers = g.answers.reduce((n, a) => n + a.propagated, 0);
      button.append(`${k + 1}. ${g.class_name}, ${g.size} images, score ${number(g.score)}`);
      if (g.answers.length) {
        button.append(" ", Object.assign(document.createElement("span"),
          { className: "marked", textContent: `✓ ${answers} masks` }));
      }
      button.addEventListener("click", () => open(g.key));
      item.append(button);
      return item;
    }));
    const done = state.groups.filter((g) => g.answers.length).length;
    $("groups-summary").textContent = `${state.groups.length} groups; ${done} marked by ${state.annotator}.`;
  }

  async function refreshList() {
    const body = await api("/api/groups");
    Object.assign(state, { groups: body.groups, store: body.store, annotator: body.annotator, features: body.features });
    $("who").textContent = `Annotator: ${body.annotator}`;
    const features = document.querySelector("input[name=rule][value=features]");
    features.disabled = !body.features;
    features.parentElement.classList.toggle("disabled", !body.features);
    showList();
  }

  async function show(kind, data, imagePath, heatPath, index = null) {
    const [image, heat] = await Promise.all([bitmap(imagePath), bitmap(heatPath)]);
    state.zoom = Math.max(1, Math.floor(DISPLAY_SIZE / Math.max(data.width, data.height)));
    state.view = { kind, index, data, image, heat, path: outlines(data, state.zoom) };
    canvas.width = data.width * state.zoom;
    canvas.height = data.height * state.zoom;
    small.width = data.width;
    small.height = data.height;
    const kept = keptDraft(data);
    state.mask = kept || new Uint8Array(data.width * data.height);
    state.undo = [];
    state.redo = [];
    message(kept ? "Your unsaved marks were restored from this browser: save them, or clear them." : "");
    $("drawn-on").textContent = kind === "group"
      ? "Drawn on the group's mean map (mean image of its typical members, mean explanation)."
      : `Drawn on image #${index}.`;
    $("back-to-mean").hidden = kind === "group";
    document.querySelectorAll("#members img").forEach((img) => img.classList.toggle("current", Number(img.dataset.index) === index));
    render();
    document.body.dataset.view = kind === "group" ? state.group.key : String(index);
  }

  async function open(key) {
    try {
      const data = await api(`/api/groups/${encodeURIComponent(key)}`);
      state.group = data;
      showList();
      $("group-title").textContent = `Group ${key}: predicted ${data.class_name}`;
      $("group-stats").textContent = `${data.size} images; concentration ${number(data.concentration)} (share of the `
        + `mean explanation in its top 5% of pixels), consistency ${number(data.consistency)} (how alike the members' `
        + "explanations are)";
      $("members").replaceChildren(...data.shown.map((index) => {
        const img = Object.assign(document.createElement("img"),
          { src: withToken(`/api/pool/${index}/image.png`), alt: `Image #${index}`, title: `Image #${index}: mark on it` });
        img.dataset.index = String(index);
        img.addEventListener("click", () => openImage(index));
        return img;
      }));
      await show("group", data, `/api/groups/${key}/image.png`, `/api/groups/${key}/heatmap.png`);
      await showAnswers();
      document.body.dataset.group = key;
    } catch (error) {
      message(`Cannot show group ${key}: ${error.message}`);
    }
  }

  async function openImage(index) {
    try {
      const data = await api(`/api/pool/${index}`);
      await show("image", data, `/api/pool/${index}/image.png`, `/api/pool/${index}/heatmap.png`, index);
    } catch (error) {
      message(`Cannot show image ${index}: ${error.message}`);
    }
  }

  // -- answers and what they propagated ----------------------------------------------------------

  async function thumbnail(p) {
    const figure = document.createElement("figure");
    const c = document.createElement("canvas");
    const mask = decodeMask(p.mask);
    const [height, width] = p.mask.shape;
    c.width = width;
    c.height = height;
    figure.append(c, Object.assign(document.createElement("figcaption"),
      { textContent: `#${p.index}${p.score === null ? "" : ` ${number(p.score)}`}` }));
    figure.title = `image #${p.index}, ${p.rule}${p.score === null ? "" : `, score ${p.score.toFixed(3)}`}`;
    figure.dataset.index = String(p.index);
    try {
      const image = await bitmap(`/api/pool/${p.index}/image.png`);
      const g = c.getContext("2d");
      g.drawImage(image, 0, 0);
      const overlay = g.getImageData(0, 0, width, height);
      mask.forEach((v, i) => { if (v) overlay.data.set([46, 160, 67, 255], 4 * i); });
      g.putImageData(overlay, 0, 0);
    } catch (_) { /* the caption stays */ }
    return figure;
  }

  async function showAnswers() {
    const answers = state.group.answers;
    if (!answers.length) {
      $("answers").replaceChildren(Object.assign(document.createElement("p"), { className: "hint", textContent: "Nothing yet." }));
      return;
    }
    const boxes = await Promise.all(answers.map(async (a) => {
      const body = await api(`/api/answers/${a.answer}/propagated`);
      const box = document.createElement("div");
      box.className = "answer";
      box.dataset.answer = String(a.answer);
      const where = a.source === null ? "the mean map" : `image #${a.source}`;
      const rule = { place: "at the same place", pixels: "where it looks the same in pixels",
        features: "where the network sees the same" }[a.rule] || a.rule;
      box.append(Object.assign(document.createElement("p"),
        { textContent: `Answer ${a.answer}: marked on ${where}, propagated ${rule} to ${body.count} images`
          + (body.count > body.propagated.length ? ` (the first ${body.propagated.length} below)` : "") + "." }));
      const grid = document.createElement("div");
      grid.className = "propagated";
      grid.append(...await Promise.all(body.propagated.map(thumbnail)));
      const undoButton = Object.assign(document.createElement("button"),
        { textContent: `Undo this answer and its ${body.count} propagated masks` });
      undoButton.className = "undo-answer";
      undoButton.addEventListener("click", () => undoAnswer(a.answer));
      box.append(grid, undoButton);
      return box;
    }));
    $("answers").replaceChildren(...boxes);
  }

  async function save() {
    if (!state.view || state.busy) return;
    if (!marked()) return message("Mark the region first: click a proposed region or paint it.");
    const rule = document.querySelector("input[name=rule]:checked").value;
    const { height, width } = state.view.data;
    state.busy = true;
    message("Saving and propagating…");
    try {
      const body = await api(`/api/groups/${encodeURIComponent(state.group.key)}/answer`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ mask: encodeMask(state.mask, height, width), rule, source: source() }) });
      storage((s) => s.removeItem(draftKey()));
      state.mask.fill(0);
      state.undo = [];
      state.redo = [];
      await refreshList();
      state.group = await api(`/api/groups/${encodeURIComponent(state.group.key)}`);
      await showAnswers();
      render();
      message(`Saved: answer ${body.answer.row}, ${body.count} masks propagated (listed below).`, true);
      document.body.dataset.saved = String(body.answer.row);
    } catch (error) {
      message(`Not saved: ${error.message}`);
    } finally {
      state.busy = false;
    }
  }

  async function undoAnswer(row) {
    try {
      const body = await api(`/api/answers/${row}/undo`, { method: "POST" });
      await refreshList();
      state.group = await api(`/api/groups/${encodeURIComponent(state.group.key)}`);
      await showAnswers();
      message(`Undone: answer ${row} and its ${body.propagated} propagated masks.`, true);
      document.body.dataset.undone = String(row);
    } catch (error) {
      message(`Not undone: ${error.message}`);
    }
  }

  function nextGroup() {
    const k = state.groups.findIndex((g) => g.key === state.group.key);
    const later = state.groups.slice(k + 1).concat(state.groups.slice(0, k + 1));
    const next = later.find((g) => !g.answers.length) || later[0];
    if (next) open(next.key);
  }

  // -- input -------------------------------------------------------------------------------------

  function toImage(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width * state.view.data.width,
      (event.clientY - rect.top) / rect.height * state.view.data.height];
  }

  function setTool(tool) {
    state.tool = tool;
    document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!state.view || event.button !== 0) return;
    const point = toImage(event);
    if (state.tool === "region") return toggleRegion(point);
    canvas.setPointerCapture(event.pointerId);
    startStroke(point);
    render();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.stroke) return;
    const point = toImage(event);
    continueStroke(point);
    render();
  });
  const endStroke = () => { if (state.stroke) changed(); state.stroke = null; };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  document.querySelectorAll("input[name=tool]").forEach((radio) => radio.addEventListener("change", () => setTool(radio.value)));
  const setBrushSize = (size) => window.PyroEbnn.setBrushSize(state, size);
  $("brush-size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
  ["show-heatmap", "show-outlines"].forEach((id) => $(id).addEventListener("input", () => state.view && render()));
  $("mark-proposals").addEventListener("click", markProposals);
  $("undo-mark").addEventListener("click", undo);
  $("redo-mark").addEventListener("click", redo);
  $("clear").addEventListener("click", clearMarks);
  $("save-group").addEventListener("click", save);
  $("next-group").addEventListener("click", nextGroup);
  $("back-to-mean").addEventListener("click", () => open(state.group.key));
  document.querySelectorAll("button").forEach((button) => button.addEventListener("click", (event) => {
    if (event.detail > 0) button.blur();
  }));

  const SHORTCUTS = {
    r: () => setTool("region"), b: () => setTool("brush"), e: () => setTool("eraser"), a: markProposals,
    z: undo, y: redo, c: clearMarks, Enter: save, n: nextGroup,
    "[": () => setBrushSize(state.brushSize - 1), "]": () => setBrushSize(state.brushSize + 1),
    h: () => { $("show-heatmap").checked = !$("show-heatmap").checked; render(); },
    o: () => { $("show-outlines").checked = !$("show-outlines").checked; render(); },
  };
  document.addEventListener("keydown", (event) => {
    if (!state.view || event.altKey || event.ctrlKey || event.metaKey || event.target.matches("input[type=text], select")) return;
    if (event.target.matches("button") && (event.key === "Enter" || event.key === " ")) return;
    window.PyroEbnn.runShortcut(SHORTCUTS, event);
  });

  async function start() {
    try {
      await refreshList();
      $("groups-work").hidden = false;
      if (!state.groups.length) return message("No groups: the pool has no explanations to group.");
      const first = state.groups.find((g) => !g.answers.length) || state.groups[0];
      await open(first.key);
    } catch (error) {
      $("groups-work").hidden = true;
      $("failure").hidden = false;
      $("failure-text").textContent = error.message;
    }
  }

  start();
})();
