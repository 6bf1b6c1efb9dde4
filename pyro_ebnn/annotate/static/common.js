// What the annotation page and the discovery view share: the access token of the address, and the
// wire form of a mask (a Uint8Array of height * width, row-major, 1 = irrelevant) sent packed as
// base64 bits, the form pyro_ebnn/annotate/wire.py reads. Loaded before the pages' own scripts.
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
  };
})();
