// The evaluation panel's words and requests (src/geoclassify/viewer/static/js/evaluate.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  countsText,
  evaluationPaths,
  guessTruthField,
  kappaText,
  matrixAlt,
  percentText,
  truthCandidates,
} from "../../src/geoclassify/viewer/static/js/evaluate.js";

const RESULT = {
  labelField: "ClassLabel",
  valueField: "ClassValue",
  confidenceField: "Confidence",
  coverageField: "Coverage",
};

test("the truth field is chosen among the layer's own fields, never those the run wrote", () => {
  const fields = ["house_id", "Truth", "roof_material", "ClassLabel", "ClassValue", "Confidence", "Coverage", "_fid"];
  assert.deepEqual(truthCandidates(fields, RESULT), ["house_id", "Truth", "roof_material"]);
  assert.deepEqual(truthCandidates(["p_ClassLabel", "ref"], { ...RESULT, labelField: "p_ClassLabel" }), ["ref"]);
});

test("a field named like a truth is offered first, else the first field", () => {
  assert.equal(guessTruthField(["house_id", "Truth", "roof_material"]), "Truth");
  assert.equal(guessTruthField(["id", "my_truth_2024"]), "my_truth_2024");
  assert.equal(guessTruthField(["id", "reference"]), "reference");
  assert.equal(guessTruthField(["id", "land_class"]), "land_class");
  assert.equal(guessTruthField(["id", "name"]), "id");
  assert.equal(guessTruthField([]), "");
});

test("figures read as the CLI prints them; an undefined one is n/a", () => {
  assert.equal(percentText(0.93388), "93.4%");
  assert.equal(percentText(1), "100.0%");
  assert.equal(percentText(null), "n/a");
  assert.equal(kappaText(0.86772), "0.868");
  assert.equal(kappaText(null), "n/a");
  assert.equal(countsText({ evaluated: 118, total: 121, unclassified: 1, no_truth: 2 }), "118 of 121 compared, 1 not classified, 2 without truth");
  assert.equal(countsText({ evaluated: 1210, total: 1210, unclassified: 0, no_truth: 0 }), "1,210 of 1,210 compared");
});

test("the picture's alt text names the result, the fields, accuracy and kappa", () => {
  const data = {
    accuracy: 0.9,
    kappa: 0.8,
    label_field: "ClassLabel",
    truth_field: "Truth",
    confusion_matrix: { labels: ["Intact", "Damaged"], matrix: [[1, 0], [0, 1]] },
  };
  assert.equal(
    matrixAlt("roofs", data),
    "Confusion matrix of roofs: ClassLabel against Truth, accuracy 90.0%, Cohen's kappa 0.800, classes Intact, Damaged",
  );
});

test("the two requests carry the fields as query parameters, escaped", () => {
  assert.deepEqual(evaluationPaths("abc", "Truth", "ClassLabel"), {
    json: "/api/items/abc/evaluation?truthField=Truth&labelField=ClassLabel",
    png: "/api/items/abc/evaluation.png?truthField=Truth&labelField=ClassLabel",
  });
  assert.equal(evaluationPaths("abc", "true class & more").json, "/api/items/abc/evaluation?truthField=true+class+%26+more");
});
