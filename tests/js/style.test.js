// The map's style expressions and the legend's rows (src/geoclassify/viewer/static/js/style.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  PALETTE,
  UNCLASSIFIED,
  classColor,
  fillColorExpression,
  legendRows,
  legendText,
  vectorLayers,
} from "../../src/geoclassify/viewer/static/js/style.js";

const CLASSES = [
  { value: 1, name: "Intact", color: [56, 168, 0] },
  { value: 2, name: "Damaged", color: [230, 0, 0] },
];

test("an EMD colour becomes #rrggbb, clamped; no colour falls back", () => {
  assert.equal(classColor([56, 168, 0]), "#38a800");
  assert.equal(classColor([300, -4, 15.6]), "#ff0010");
  assert.equal(classColor("#123456"), "#123456");
  assert.equal(classColor(undefined), UNCLASSIFIED);
  assert.equal(classColor([1, 2]), UNCLASSIFIED);
});

test("fill-color matches the label field against each class's name", () => {
  const expression = fillColorExpression("ClassLabel", CLASSES);
  assert.deepEqual(expression, [
    "match",
    ["to-string", ["coalesce", ["get", "ClassLabel"], ""]],
    "Intact",
    "#38a800",
    "Damaged",
    "#e60000",
    UNCLASSIFIED,
  ]);
  assert.equal(fillColorExpression("ClassLabel", []), UNCLASSIFIED);
});

test("classes without a Color get the palette, and a duplicated name is matched once", () => {
  const expression = fillColorExpression("Label", [{ name: "A" }, { name: "B" }, { name: "A", color: [0, 0, 0] }]);
  assert.deepEqual(expression.slice(2, -1), ["A", PALETTE[0], "B", PALETTE[1]]);
});

test("the legend lists the EMD's classes in order with their counts, then unknown labels and unclassified", () => {
  const { rows, total } = legendRows(CLASSES, { Damaged: 41, Intact: 80, "": 3, Other: 2 });
  assert.deepEqual(
    rows.map((r) => [r.name, r.count]),
    [["Intact", 80], ["Damaged", 41], ["Other", 2], ["Unclassified", 3]],
  );
  assert.equal(total, 126);
  assert.equal(legendText(rows[0]), "Intact (80)");
  assert.equal(legendText({ name: "Intact", count: 100000 }), "Intact (100,000)");
});

test("a class no feature got still shows, with 0", () => {
  const { rows } = legendRows(CLASSES, { Intact: 5 });
  assert.deepEqual(rows.map(legendText), ["Intact (5)", "Damaged (0)"]);
});

test("a tiled layer's levels hand over to each other at the next level's zoom", () => {
  const layers = vectorLayers({ id: "r", levels: [11, 15], color: "#f00", geometryTypes: ["Polygon"] });
  const fills = layers.filter((l) => l.type === "fill");
  assert.deepEqual(
    fills.map((l) => [l.source, l.minzoom, l.maxzoom]),
    [["r:z11", 0, 15], ["r:z15", 15, undefined]],
  );
  assert.ok(layers.every((l) => l["source-layer"] === "features"));
  assert.equal(fills[0].paint["fill-color"], "#f00");
  assert.ok(!layers.some((l) => l.type === "circle"), "no point layer for polygons");
});

test("a layer of unknown geometry gets every kind of layer; outlines only without a colour", () => {
  const layers = vectorLayers({ id: "f", levels: [14], color: null });
  assert.deepEqual(layers.map((l) => l.type).sort(), ["circle", "fill", "line", "line"]);
  assert.equal(layers.find((l) => l.type === "fill").paint["fill-color"], "rgba(0,0,0,0)");
  assert.ok(layers.find((l) => l.type === "circle").filter[2] === "Point");
});
