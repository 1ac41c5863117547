// How layers look (no DOM, no map here): MapLibre style expressions that fill each feature with its class's
// EMD Color, the legend's rows with their counts, and the layer specs of a tiled feature layer.

/** A categorical palette for classes the model does not colour (Esri's defaults when the EMD has no Color). */
export const PALETTE = ["#1f78b4", "#ff7f00", "#33a02c", "#e31a1c", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99"];
export const UNCLASSIFIED = "#9e9e9e";
export const OUTLINE = "#ffd400";

function hex(n) {
  return Math.max(0, Math.min(255, Math.round(Number(n) || 0)))
    .toString(16)
    .padStart(2, "0");
}

/** An EMD Color ([r, g, b], 0-255, or a CSS colour) as #rrggbb; `fallback` when there is none. */
export function classColor(color, fallback = UNCLASSIFIED) {
  if (Array.isArray(color) && color.length >= 3) return `#${hex(color[0])}${hex(color[1])}${hex(color[2])}`;
  if (typeof color === "string" && color.trim()) return color.trim();
  return fallback;
}

/** The classes' names and colours, in the EMD's order. */
export function classColors(classes = []) {
  return classes.map((c, i) => ({ name: String(c.name ?? c.Name), color: classColor(c.color ?? c.Color, PALETTE[i % PALETTE.length]) }));
}

/** fill-color: the feature's label matched against the classes' names, grey for none or an unknown label. */
export function fillColorExpression(labelField, classes = [], fallback = UNCLASSIFIED) {
  const pairs = classColors(classes).flatMap((c) => [c.name, c.color]);
  if (!pairs.length) return fallback;
  return ["match", ["to-string", ["coalesce", ["get", labelField], ""]], ...dedupe(pairs), fallback];
}

function dedupe(pairs) {
  const seen = new Set();
  const out = [];
  for (let i = 0; i < pairs.length; i += 2) {
    if (seen.has(pairs[i])) continue;
    seen.add(pairs[i]);
    out.push(pairs[i], pairs[i + 1]);
  }
  return out;
}

/** The legend: each class as {name, color, count} in the EMD's order, labels the EMD lacks after them, and
 * "Unclassified" for features that got no label; `total` is every feature counted. */
export function legendRows(classes = [], counts = {}) {
  const known = classColors(classes);
  const names = new Set(known.map((c) => c.name));
  const rows = known.map((c) => ({ name: c.name, color: c.color, count: Number(counts[c.name] || 0) }));
  const others = Object.keys(counts)
    .filter((k) => k !== "" && !names.has(k))
    .sort();
  others.forEach((name, i) => rows.push({ name, color: UNCLASSIFIED, count: Number(counts[name]), extra: true, index: i }));
  if (counts[""]) rows.push({ name: "Unclassified", color: UNCLASSIFIED, count: Number(counts[""]), unclassified: true });
  const total = Object.values(counts).reduce((a, b) => a + Number(b || 0), 0);
  return { rows, total };
}

/** "Intact (80)" */
export function legendText(row) {
  return `${row.name} (${row.count.toLocaleString("en-US")})`;
}

/**
 * The MapLibre layers of one tiled feature layer: per zoom level of its tiles (coarse, then fine) a fill, an
 * outline, a line and a circle layer, each shown from its level up to the next one (the map overzooms a level's
 * tiles until then). `color` is a fill-color value or expression; null draws outlines only.
 */
export function vectorLayers({ id, levels, sourceLayer = "features", color = null, geometryTypes = [] }) {
  const kinds = new Set(geometryTypes.map((t) => String(t).replace(/^Multi/, "")));
  const any = kinds.size === 0;
  const layers = [];
  levels.forEach((level, i) => {
    const source = `${id}:z${level}`;
    const zoom = { minzoom: i === 0 ? 0 : level };
    if (i + 1 < levels.length) zoom.maxzoom = levels[i + 1];
    const base = { source, "source-layer": sourceLayer, ...zoom };
    if (any || kinds.has("Polygon")) {
      layers.push({
        id: `${source}:fill`,
        type: "fill",
        ...base,
        filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "fill-color": color ?? "rgba(0,0,0,0)", "fill-opacity": color ? 0.6 : 1 },
      });
      layers.push({
        id: `${source}:outline`,
        type: "line",
        ...base,
        filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "line-color": color ? "#ffffff" : OUTLINE, "line-width": color ? 0.8 : 1.5, "line-opacity": 0.9 },
      });
    }
    if (any || kinds.has("LineString")) {
      layers.push({
        id: `${source}:line`,
        type: "line",
        ...base,
        filter: ["==", ["geometry-type"], "LineString"],
        paint: { "line-color": color ?? OUTLINE, "line-width": 2 },
      });
    }
    if (any || kinds.has("Point")) {
      layers.push({
        id: `${source}:circle`,
        type: "circle",
        ...base,
        filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-color": color ?? OUTLINE, "circle-radius": 4, "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 },
      });
    }
  });
  return layers;
}
