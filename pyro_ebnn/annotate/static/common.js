// What the annotation page and the discovery view share: the access token of the address, the marking
// tools (region, proposals, brush stroke, undo, redo, clear), and the wire form of a mask (a Uint8Array of height * width, row-major, 1 = irrelevant)
// sent packed as base64 bits, the form pyro_ebnn/annotate/wire.py reads. Loaded before the pages'
// own scripts.
"use strict";

window.PyroEbnn = (() => {
  const TOKEN = new URLSearchParams(location.search).get("token");
  return {
    AUTH: TOKEN ? { "X-Annotate-Token": TOKEN } : {},
    withToken: (path) => (TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path),

    encodeMask(mask, height, width) {
      const bytes = new Uint8Array(Math.ceil(mask.length / 8));
      mask.forEach((v, i) => { if (v) bytes[i >> 3] |= 0x80 >> (i & 7); });
      let text = "";
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return { shape: [height, width], bits: btoa(text) };
    },

    decodeMask({ shape, bits }) {
      const raw = atob(bits);
      const mask = new Uint8Array(shape[0] * shape[1]);
      for (let i = 0; i < mask.length; i++) mask[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
      return mask;
    },

    // The brush's side in image pixels, kept within the page's #brush-size slider, which shows it.
    setBrushSize(state, size) {
      const slider = document.getElementById("brush-size");
      state.brushSize = Math.min(Number(slider.max), Math.max(Number(slider.min), size));
      slider.value = String(state.brushSize);
      document.getElementById("brush-size-value").textContent = String(state.brushSize);
    },

    // Run the action that a page's table of shortcuts gives the key of a keydown `event` (letters in
    // either case); false where the table has none, so the key keeps its browser meaning.
    runShortcut(shortcuts, event) {
      const action = shortcuts[event.key.length === 1 ? event.key.toLowerCase() : event.key];
      if (!action) return false;
      event.preventDefault();
      action();
      return true;
    },

    // Set to `value` (1 paint, 0 erase) every pixel of `mask` whose centre lies within `brushSize` / 2
    // of the segment from `from` to `to` (image pixels), so a stroke is the same however the mouse moved.
    paintStroke(mask, width, height, from, to, brushSize, value) {
      const r = brushSize / 2;
      const [x0, y0] = from, [x1, y1] = to;
      const dx = x1 - x0, dy = y1 - y0, length2 = dx * dx + dy * dy;
      const xs = [Math.max(0, Math.floor(Math.min(x0, x1) - r)), Math.min(width - 1, Math.ceil(Math.max(x0, x1) + r))];
      const ys = [Math.max(0, Math.floor(Math.min(y0, y1) - r)), Math.min(height - 1, Math.ceil(Math.max(y0, y1) + r))];
      for (let y = ys[0]; y <= ys[1]; y++) {
        for (let x = xs[0]; x <= xs[1]; x++) {
          const px = x + 0.5, py = y + 0.5;
          const t = length2 ? Math.min(1, Math.max(0, ((px - x0) * dx + (py - y0) * dy) / length2)) : 0;
          const ex = x0 + t * dx - px, ey = y0 + t * dy - py;
          if (ex * ex + ey * ey <= r * r) mask[y * width + x] = value;
        }
      }
    },

    // The marking tools of a page, acting on `state.mask` (with `state.undo` and `state.redo`, lists of
    // earlier and later masks) of the image `data()` returns ({width, height, segments, candidates}):
    // `changed()` redraws and keeps the draft, `message(text)` tells the person, and `noProposal` is
    // what a click on "mark the proposals" says where there is none.
    markTools({ state, data, changed, message, noProposal, maxUndo = 100 }) {
      const regions = new WeakMap();  // data -> Map(segment -> its pixel indices)
      const { paintStroke } = window.PyroEbnn;

      function segmentPixels(segment) {
        const d = data();
        if (!regions.has(d)) regions.set(d, new Map());
        const cache = regions.get(d);
        if (!cache.has(segment)) {
          const found = [];
          d.segments.forEach((s, i) => { if (s === segment) found.push(i); });
          cache.set(segment, found);
        }
        return cache.get(segment);
      }

      function pushUndo() {
        state.undo.push(state.mask.slice());
        if (state.undo.length > maxUndo) state.undo.shift();
        state.redo = [];
      }

      function paint(from, to, value) {
        const { width, height } = data();
        paintStroke(state.mask, width, height, from, to, state.brushSize, value);
      }

      const step = (from, to, empty) => {
        if (!state[from].length) return message(empty);
        state[to].push(state.mask);
        state.mask = state[from].pop();
        return changed();
      };

      return {
        marked: () => state.mask.reduce((sum, v) => sum + v, 0),
        pushUndo,
        // a click with the region tool: the region under the pointer, marked or unmarked whole
        toggleRegion([x, y]) {
          const { width, segments } = data();
          const pixels = segmentPixels(segments[Math.floor(y) * width + Math.floor(x)]);
          const value = pixels.every((i) => state.mask[i]) ? 0 : 1;
          pushUndo();
          pixels.forEach((i) => { state.mask[i] = value; });
          changed();
        },
        markProposals() {
          if (!data().candidates.length) return message(noProposal);
          pushUndo();
          data().candidates.forEach((segment) => segmentPixels(segment).forEach((i) => { state.mask[i] = 1; }));
          return changed();
        },
        paint,
        // the brush (paint) and the eraser: a stroke starts where the left button goes down (state.stroke)
        // and follows the pointer until it goes up
        startStroke(point) {
          pushUndo();
          state.stroke = { last: point, value: state.tool === "brush" ? 1 : 0 };
          paint(point, point, state.stroke.value);
        },
        continueStroke(point) {
          paint(state.stroke.last, point, state.stroke.value);
          state.stroke.last = point;
        },
        undo: () => step("undo", "redo", "Nothing to undo."),
        redo: () => step("redo", "undo", "Nothing to redo."),
        clear() {
          if (!state.mask.some((v) => v)) return;
          pushUndo();
          state.mask.fill(0);
          changed();
        },
      };
    },
  };
})();
