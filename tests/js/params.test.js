// The tool's parameters: argument inputs from ParameterInfo, checks, and the submitJob parameters (params.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  argumentFields,
  classifyParams,
  defaultOutputName,
  fieldOfMessage,
  layerStem,
  validateClassify,
} from "../../src/geoclassify/viewer/static/js/params.js";

const INFO = {
  ModelName: "RoofDamageClassifier",
  ParameterInfo: [
    { name: "batch_size", dataType: "numeric", value: "16", defaultValue: "16", displayName: "Batch Size", description: "chips per call" },
    { name: "test_time_augmentation", dataType: "boolean", value: "false", defaultValue: "false", displayName: "Test Time Augmentation" },
    { name: "padding", dataType: "string", value: null, defaultValue: "0" },
    { name: "rasters", dataType: "rasters" },
    { name: "model", dataType: "string" },
    { name: "device", dataType: "numeric" },
  ],
};

test("one field per argument, with its kind, value, default and help; the tool's own ones dropped", () => {
  const fields = argumentFields(INFO);
  assert.deepEqual(
    fields.map((f) => [f.name, f.kind, f.value, f.defaultValue]),
    [
      ["batch_size", "number", "16", "16"],
      ["test_time_augmentation", "boolean", false, "false"],
      ["padding", "text", "0", "0"],
    ],
  );
  assert.equal(fields[0].label, "Batch Size");
  assert.equal(fields[0].description, "chips per call");
  assert.equal(fields[2].label, "padding");
  assert.deepEqual(argumentFields({}), []);
  assert.deepEqual(argumentFields(null), []);
});

test("the default result name is Map Viewer's, made unique", () => {
  assert.equal(defaultOutputName("houses"), "houses_classifiedObjects");
  const taken = new Set(["houses_classifiedObjects", "houses_classifiedObjects_2"]);
  assert.equal(defaultOutputName("houses", taken), "houses_classifiedObjects_3");
  assert.equal(defaultOutputName("my houses"), "my_houses_classifiedObjects");
  assert.equal(layerStem({ kind: "features", name: "sub/houses.gpkg" }), "houses");
  assert.equal(layerStem({ kind: "features", name: "x.gpkg (roofs)", layer: "roofs" }), "roofs");
  assert.equal(layerStem({ kind: "features", name: "houses.v2", itemId: "abc" }), "houses.v2");
});

const VALID = {
  inputRaster: { uri: "/data/orthophoto.tif" },
  inputFeatures: { itemId: "f1" },
  model: { itemId: "m1" },
  modelArguments: { batch_size: "8", test_time_augmentation: "true" },
  classLabelField: "ClassLabel",
  processAllRasterItems: "false",
  outputName: "houses_classifiedObjects",
  extent: { xmin: "", ymin: "", xmax: "", ymax: "" },
  cellSize: "",
  resamplingMethod: "",
  processorType: "",
  parallelProcessingFactor: "",
  retryOnFailures: "",
};
const SPECS = argumentFields(INFO);

test("valid values pass", () => {
  assert.deepEqual(validateClassify(VALID, { argumentSpecs: SPECS }), {});
});

test("each invalid value is explained under its own field", () => {
  const errors = validateClassify(
    {
      ...VALID,
      inputRaster: null,
      model: null,
      outputName: "taken",
      classLabelField: "1 bad",
      modelArguments: { batch_size: "sixteen" },
      extent: { xmin: "15", ymin: "", xmax: "", ymax: "" },
      cellSize: "-1",
      parallelProcessingFactor: "lots",
      retryOnFailures: "1.5",
    },
    { taken: new Set(["taken"]), argumentSpecs: SPECS },
  );
  assert.deepEqual(Object.keys(errors).sort(), [
    "cellSize",
    "classLabelField",
    "extent",
    "inputRaster",
    "model",
    "modelArguments.batch_size",
    "outputName",
    "parallelProcessingFactor",
    "retryOnFailures",
  ]);
  assert.match(errors.outputName, /exists in My Content/);
  assert.match(errors["modelArguments.batch_size"], /Batch Size must be a number/);
});

test("an extent must be whole, ordered and in degrees", () => {
  const check = (extent) => validateClassify({ ...VALID, extent }).extent;
  assert.equal(check({ xmin: "15", ymin: "42", xmax: "15.01", ymax: "42.01" }), undefined);
  assert.match(check({ xmin: "15.01", ymin: "42", xmax: "15", ymax: "42.01" }), /minimum must be below/);
  assert.match(check({ xmin: "500000", ymin: "42", xmax: "500100", ymax: "42.01" }), /longitude/);
  assert.match(check({ xmin: "a", ymin: "42", xmax: "15", ymax: "42.01" }), /numbers/);
});

test("submitJob parameters carry Esri's names and JSON forms", () => {
  const params = classifyParams({
    ...VALID,
    extent: { xmin: "15", ymin: "42", xmax: "15.01", ymax: "42.01" },
    cellSize: "0.5",
    processorType: "CPU",
    parallelProcessingFactor: "50%",
    retryOnFailures: "2",
    processAllRasterItems: "true",
  });
  assert.deepEqual(JSON.parse(params.inputRaster), { uri: "/data/orthophoto.tif" });
  assert.deepEqual(JSON.parse(params.inputFeatures), { itemId: "f1" });
  assert.deepEqual(JSON.parse(params.model), { itemId: "m1" });
  assert.deepEqual(JSON.parse(params.outputFeatureClass), { serviceProperties: { name: "houses_classifiedObjects" } });
  assert.deepEqual(JSON.parse(params.modelArguments), { batch_size: "8", test_time_augmentation: "true" });
  assert.equal(params.classLabelField, "ClassLabel");
  assert.equal(params.processAllRasterItems, "true");
  assert.deepEqual(JSON.parse(params.context), {
    extent: { xmin: 15, ymin: 42, xmax: 15.01, ymax: 42.01, spatialReference: { wkid: 4326 } },
    cellSize: 0.5,
    processorType: "CPU",
    parallelProcessingFactor: "50%",
    retryOnFailures: 2,
  });
});

test("no features, no arguments and no environments send no such parameters", () => {
  const params = classifyParams({ ...VALID, inputFeatures: null, modelArguments: {}, classLabelField: "" });
  assert.ok(!("inputFeatures" in params) && !("modelArguments" in params) && !("context" in params));
  assert.equal(params.classLabelField, "ClassLabel");
  assert.equal(params.processAllRasterItems, "false");
});

test("a server message is placed by the parameter it names", () => {
  assert.equal(fieldOfMessage("an item named 'x' exists in your content; choose another output name"), "outputName");
  assert.equal(fieldOfMessage("outputFeatureClass is required: the name of the result"), "outputName");
  assert.equal(fieldOfMessage("context.cellSize must be a number"), "cellSize");
  assert.equal(fieldOfMessage("inputRaster: '/x' is outside the server's data roots"), "inputRaster");
  assert.equal(fieldOfMessage("model: give {\"itemId\": ...}"), "model");
  assert.equal(fieldOfMessage("something else went wrong"), null);
});
