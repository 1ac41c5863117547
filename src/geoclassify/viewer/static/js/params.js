// The tool's parameters as data (no DOM here): the model's arguments from QueryDeepLearningModelInfo's
// ParameterInfo, the checks shown next to each field, and the submitJob parameters in Esri's REST names.

/** Arguments a client never shows: the tool fills them itself (as Esri's own tool pane drops them). */
const HIDDEN_ARGUMENTS = new Set(["rasters", "model", "device"]);
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const FACTOR = /^\s*(\d+(\.\d+)?%|\d+)\s*$/;

/** One input description per model argument: name, label, kind (number, boolean or text), value, help. */
export function argumentFields(modelInfo) {
  const list = Array.isArray(modelInfo?.ParameterInfo) ? modelInfo.ParameterInfo : [];
  return list
    .filter((p) => p && typeof p.name === "string" && !HIDDEN_ARGUMENTS.has(p.name))
    .map((p) => {
      const type = String(p.dataType || "string").toLowerCase();
      const kind = type === "numeric" || type === "number" ? "number" : type === "boolean" ? "boolean" : "text";
      const value = p.value ?? p.defaultValue ?? "";
      return {
        name: p.name,
        label: p.displayName || p.name,
        kind,
        value: kind === "boolean" ? String(value).toLowerCase() === "true" : String(value),
        defaultValue: p.defaultValue ?? null,
        description: p.description || "",
        required: Boolean(p.required),
      };
    });
}

/** The layer name a default output name starts from: an item's name, a file's stem, a GeoPackage's layer. */
export function layerStem(layer) {
  if (!layer) return "";
  if (layer.layer) return layer.layer;
  const base = String(layer.name || "").split("/").pop();
  return layer.kind === "features" && !layer.itemId ? base.replace(/\.[^.]+$/, "") : base;
}

/** `<layer>_classifiedObjects` (Map Viewer's default), made unique among `taken` names with _2, _3, ... */
export function defaultOutputName(stem, taken = new Set()) {
  const base = `${String(stem || "ClassifyObjectsUsingDeepLearning").replace(/\s+/g, "_")}_classifiedObjects`;
  if (!taken.has(base)) return base;
  for (let n = 2; ; n += 1) if (!taken.has(`${base}_${n}`)) return `${base}_${n}`;
}

function number(text) {
  const value = Number(String(text).trim());
  return String(text).trim() !== "" && Number.isFinite(value) ? value : null;
}

/** What is wrong with the form's `values`, by field name (Esri's names; `modelArguments.NAME` per argument). */
export function validateClassify(values, { taken = new Set(), argumentSpecs = [] } = {}) {
  const errors = {};
  if (!values.inputRaster) errors.inputRaster = "Choose the imagery to classify.";
  if (!values.model) errors.model = "Choose a model (.dlpk).";
  const name = String(values.outputName ?? "").trim();
  if (!name) errors.outputName = "Give the result layer a name.";
  else if (name.length > 128 || !/^[\P{C}]+$/u.test(name)) errors.outputName = "Use 1 to 128 printable characters.";
  else if (taken.has(name)) errors.outputName = `An item named "${name}" exists in My Content; choose another name.`;
  const label = String(values.classLabelField ?? "").trim();
  if (label && !FIELD_NAME.test(label)) {
    errors.classLabelField = "Use letters, digits and _ (starting with a letter or _), at most 64.";
  }
  for (const spec of argumentSpecs) {
    const value = values.modelArguments?.[spec.name];
    if (spec.kind === "number" && String(value ?? "").trim() !== "" && number(value) === null) {
      errors[`modelArguments.${spec.name}`] = `${spec.label} must be a number.`;
    } else if (spec.required && String(value ?? "").trim() === "") {
      errors[`modelArguments.${spec.name}`] = `${spec.label} is required.`;
    }
  }
  const extent = values.extent || {};
  const sides = ["xmin", "ymin", "xmax", "ymax"];
  const given = sides.filter((k) => String(extent[k] ?? "").trim() !== "");
  if (given.length && given.length < 4) {
    errors.extent = "Give all four sides of the extent, or none.";
  } else if (given.length === 4) {
    const [xmin, ymin, xmax, ymax] = sides.map((k) => number(extent[k]));
    if ([xmin, ymin, xmax, ymax].some((v) => v === null)) errors.extent = "The extent's sides must be numbers.";
    else if (xmin >= xmax || ymin >= ymax) errors.extent = "The extent's minimum must be below its maximum.";
    else if (xmin < -180 || xmax > 180 || ymin < -90 || ymax > 90) {
      errors.extent = "The extent is in longitude (-180 to 180) and latitude (-90 to 90).";
    }
  }
  if (String(values.cellSize ?? "").trim() !== "") {
    const size = number(values.cellSize);
    if (size === null || size <= 0) errors.cellSize = "The cell size is a number above 0, in the imagery's units.";
  }
  if (String(values.parallelProcessingFactor ?? "").trim() !== "" && !FACTOR.test(values.parallelProcessingFactor)) {
    errors.parallelProcessingFactor = 'Give a number of processes ("2") or a share of the cores ("50%").';
  }
  if (String(values.retryOnFailures ?? "").trim() !== "") {
    const retries = number(values.retryOnFailures);
    if (retries === null || retries < 0 || !Number.isInteger(retries)) {
      errors.retryOnFailures = "Retries is a whole number, 0 or more.";
    }
  }
  return errors;
}

/** The submitJob parameters of ClassifyObjectsUsingDeepLearning for valid form `values`. */
export function classifyParams(values) {
  const params = {
    inputRaster: JSON.stringify(values.inputRaster),
    model: JSON.stringify(values.model),
    outputFeatureClass: JSON.stringify({ serviceProperties: { name: String(values.outputName).trim() } }),
    classLabelField: String(values.classLabelField ?? "").trim() || "ClassLabel",
    processAllRasterItems: values.processAllRasterItems === true || values.processAllRasterItems === "true" ? "true" : "false",
  };
  if (values.inputFeatures) params.inputFeatures = JSON.stringify(values.inputFeatures);
  const args = values.modelArguments || {};
  const named = Object.keys(args).filter((k) => String(args[k] ?? "").trim() !== "");
  if (named.length) params.modelArguments = JSON.stringify(Object.fromEntries(named.map((k) => [k, String(args[k]).trim()])));
  const context = {};
  const extent = values.extent || {};
  if (["xmin", "ymin", "xmax", "ymax"].every((k) => String(extent[k] ?? "").trim() !== "")) {
    context.extent = {
      xmin: Number(extent.xmin),
      ymin: Number(extent.ymin),
      xmax: Number(extent.xmax),
      ymax: Number(extent.ymax),
      spatialReference: { wkid: 4326 },
    };
  }
  if (String(values.cellSize ?? "").trim() !== "") context.cellSize = Number(values.cellSize);
  for (const key of ["resamplingMethod", "processorType"]) if (values[key]) context[key] = values[key];
  if (String(values.parallelProcessingFactor ?? "").trim() !== "") {
    context.parallelProcessingFactor = String(values.parallelProcessingFactor).trim();
  }
  if (String(values.retryOnFailures ?? "").trim() !== "") context.retryOnFailures = Number(values.retryOnFailures);
  if (Object.keys(context).length) params.context = JSON.stringify(context);
  return params;
}

/** The form field a server message is about (the server names Esri's parameters), or null. */
export function fieldOfMessage(message) {
  const text = String(message || "");
  const fields = [
    ["outputFeatureClass", "outputName"],
    ["output name", "outputName"],
    ["inputRaster", "inputRaster"],
    ["inputFeatures", "inputFeatures"],
    ["modelArguments", "modelArguments"],
    ["classLabelField", "classLabelField"],
    ["processAllRasterItems", "processAllRasterItems"],
    ["context.extent", "extent"],
    ["context extent", "extent"],
    ["context.cellSize", "cellSize"],
    ["context cellSize", "cellSize"],
    ["context.resamplingMethod", "resamplingMethod"],
    ["context.processorType", "processorType"],
    ["context.parallelProcessingFactor", "parallelProcessingFactor"],
    ["context.retryOnFailures", "retryOnFailures"],
    ["context retryOnFailures", "retryOnFailures"],
    ["model", "model"],
  ];
  let best = null;
  for (const [word, field] of fields) {
    const at = text.indexOf(word);
    if (at >= 0 && (best === null || at < best.at)) best = { at, field };
  }
  return best ? best.field : null;
}
