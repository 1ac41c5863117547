// The layers list: the user's imagery, feature layers, results and models, from My Content and the server's
// data folders, each shown on the map when ticked.

const GROUPS = [
  ["raster", "Imagery"],
  ["features", "Feature layers"],
  ["result", "Results"],
  ["model", "Models"],
];

export function layerKey(layer) {
  return layer.layer ? `${layer.src}#${layer.layer}` : layer.src;
}

export function renderLayers(container, layers, { shown, onToggle, onZoom }) {
  let counter = 0;
  const groups = GROUPS.map(([kind, title]) => {
    const members = layers.filter((l) => l.kind === kind);
    const section = document.createElement("section");
    const heading = document.createElement("h3");
    heading.textContent = title;
    section.append(heading);
    if (!members.length) {
      const none = document.createElement("p");
      none.className = "hint";
      none.textContent = "None yet.";
      section.append(none);
      return section;
    }
    const list = document.createElement("ul");
    for (const layer of members) {
      const key = layerKey(layer);
      const item = document.createElement("li");
      item.dataset.key = key;
      counter += 1;
      const id = `layer-${counter}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.title = layer.name;
      label.textContent = layer.name;
      if (!layer.itemId) {
        const where = document.createElement("span");
        where.className = "where";
        where.textContent = " · data folder";
        label.append(where);
      }
      if (isMapLayer(layer.kind)) {
        const box = document.createElement("input");
        box.type = "checkbox";
        box.id = id;
        box.checked = shown.has(key);
        box.addEventListener("change", () => onToggle(layer, box.checked, box));
        const zoom = document.createElement("button");
        zoom.type = "button";
        zoom.textContent = "Zoom to";
        zoom.setAttribute("aria-label", `Zoom to ${layer.name}`);
        zoom.addEventListener("click", () => onZoom(layer, box));
        item.append(box, label, zoom);
      } else {
        label.removeAttribute("for");
        item.append(label);
      }
      list.append(item);
    }
    section.append(list);
    return section;
  });
  container.replaceChildren(...groups);
}

function isMapLayer(kind) {
  return kind === "raster" || kind === "features" || kind === "result";
}
