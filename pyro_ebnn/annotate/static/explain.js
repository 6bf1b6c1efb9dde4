// Reading the explanation at a glance: the explanation beside the image, its colour scale with the
// values at its ends, and what the model looks at per predicted class (the mean explanation over
// the pool, shown when its panel is opened). Fed by annotate.js's "annotate:item" event, which
// carries the item shown; the images are the API's PNGs, enlarged by CSS with nearest-neighbour.
"use strict";

(() => {
  const { withToken } = window.PyroEbnn;
  const $ = (id) => document.getElementById(id);
  const number = (v) => (v !== 0 && (Math.abs(v) >= 1e3 || Math.abs(v) < 1e-2) ? v.toExponential(1) : String(+v.toPrecision(2)));

  document.addEventListener("annotate:item", ({ detail: data }) => {
    const base = `/api/items/${data.index}`;
    $("side-image").src = withToken(`${base}/image.png`);
    $("side-heat").src = withToken(`${base}/heatmap.png`);
    const { signed, low, high } = data.heatmap;
    $("heat-scale-bar").src = withToken(`/api/heatmap-scale.png?signed=${signed ? 1 : 0}`);
    $("heat-scale-low").textContent = signed ? `${number(low)} against` : `${number(low)} low`;
    $("heat-scale-high").textContent = signed ? `${number(high)} for` : `${number(high)} high`;
  });

  async function showClassMaps() {
    if (!$("class-maps").open || $("class-maps-grid").childElementCount) return;
    $("class-maps-note").textContent = "Explaining the pool's images…";
    try {
      const response = await fetch(withToken("/api/classes"));
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
      $("class-maps-grid").replaceChildren(...body.classes.map(({ class: k, name, images }) => {
        const figure = document.createElement("figure");
        const image = Object.assign(document.createElement("img"),
          { alt: `Mean explanation of the images predicted as ${name}`, src: withToken(`/api/classes/${k}/heatmap.png`) });
        figure.append(image, Object.assign(document.createElement("figcaption"),
          { textContent: `${name}: ${images} image${images === 1 ? "" : "s"}` }));
        return figure;
      }));
      $("class-maps-note").textContent = "The mean explanation of the pool's images predicted as each class "
        + "(each image counts the same; same colours as above).";
    } catch (error) {
      $("class-maps-note").textContent = `Cannot show the per-class explanations: ${error.message}`;
    }
  }

  $("class-maps").addEventListener("toggle", showClassMaps);
})();
