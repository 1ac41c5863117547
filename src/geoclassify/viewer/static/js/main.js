// The page: sign-in, the layers list and uploads, the tool pane and its job, the map with the result's legend
// and popups, My Content and a result's evaluation. Each part lives in its own module; this one wires them together.

import { ApiError, api, download, session } from "./api.js";
import { renderContent } from "./content.js";
import {
  countsText,
  evaluationPaths,
  fetchImage,
  guessTruthField,
  kappaText,
  matrixAlt,
  percentText,
  truthCandidates,
} from "./evaluate.js";
import { CLASSIFY, JobClient } from "./jobclient.js";
import { layerKey, renderLayers } from "./layers.js";
import { hideLegend, showLegend } from "./legend.js";
import { MapView } from "./mapview.js";
import { classifyParams, fieldOfMessage, validateClassify } from "./params.js";
import { fillColorExpression } from "./style.js";
import { ToolPane } from "./toolpane.js";
import { itemName, kindForFile, uploadFile } from "./upload.js";

const $ = (id) => document.getElementById(id);
const jobs = new JobClient();
const state = {
  me: null,
  layers: [],
  shown: new Set(),
  mapView: null,
  tool: null,
  job: null,
  legendKey: null,
  legendDetails: null,
  modelToken: 0,
  evaluation: null, // { result, details, opener, imageUrl, token }
};
const timings = {};
globalThis.geoclassifyViewer = { state, timings };

// -- signing in -----------------------------------------------------------------------------------------------

async function signIn(token, { quiet = false } = {}) {
  try {
    state.me = await api("/viewer/api/me", { token });
  } catch (err) {
    if (!quiet) $("signin-error").textContent = err.message;
    session.clear();
    $("token").setAttribute("aria-invalid", "true");
    return false;
  }
  session.set(token);
  $("signin-error").textContent = "";
  $("token").removeAttribute("aria-invalid");
  $("token").value = "";
  $("signin").hidden = true;
  $("session").hidden = false;
  $("user-name").textContent = state.me.user;
  $("welcome").hidden = true;
  $("app").hidden = false;
  if (!state.mapView) {
    state.mapView = new MapView($("map"));
    globalThis.geoclassifyViewer.map = state.mapView.map;
    state.mapView.map.on("click", (e) => showPopup(e));
  }
  await Promise.all([loadLayers(), loadContent()]);
  return true;
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) {
    $("signin-error").textContent = "Paste the API token that geoclassify users add printed.";
    return;
  }
  signIn(token);
});

$("signout").addEventListener("click", () => {
  session.clear();
  globalThis.location.reload();
});

// -- layers ---------------------------------------------------------------------------------------------------

function takenNames() {
  return new Set(state.layers.filter((l) => l.itemId).map((l) => l.name));
}

async function loadLayers() {
  const reply = await api("/viewer/api/layers");
  state.layers = reply.layers;
  renderLayers($("layer-groups"), state.layers, {
    shown: state.shown,
    onToggle: (layer, on, box) => (on ? showLayer(layer, { box }) : hideLayer(layer)),
    onZoom: async (layer, box) => {
      const key = layerKey(layer);
      if (!state.mapView.has(key)) await showLayer(layer, { box });
      state.mapView.fit(key);
    },
  });
  state.tool.setLayers(state.layers, takenNames());
  checkOutputName();
}

function layerError(layer, message) {
  $("upload-error").textContent = `${layer.name}: ${message}`;
}

/** Put a layer on the map (imagery as raster tiles, layers and results as vector tiles) and zoom to it. */
async function showLayer(layer, { box = null, fit = true } = {}) {
  const key = layerKey(layer);
  let details;
  try {
    details = await api(`/viewer/api/layer?${new URLSearchParams(layer.layer ? { src: layer.src, layer: layer.layer } : { src: layer.src })}`);
  } catch (err) {
    layerError(layer, err.message);
    if (box) box.checked = false;
    return null;
  }
  if (details.kind === "raster") await state.mapView.addRaster(key, details);
  else if (details.kind === "result") {
    const result = details.result;
    await state.mapView.addVector(key, details, fillColorExpression(result.labelField, result.classes));
    showResultLegend(key, details);
  } else await state.mapView.addVector(key, details, null);
  state.shown.add(key);
  const item = document.querySelector(`#layer-groups li[data-key="${CSS.escape(key)}"] input[type=checkbox]`);
  if (item) item.checked = true;
  if (fit) state.mapView.fit(key);
  return details;
}

function hideLayer(layer) {
  const key = layerKey(layer);
  state.mapView.remove(key);
  state.shown.delete(key);
  if (state.legendKey === key) {
    hideLegend();
    state.legendKey = null;
  }
}

function showResultLegend(key, details) {
  state.legendKey = key;
  state.legendDetails = details;
  showLegend({
    title: details.name,
    classes: details.result.classes,
    counts: details.result.counts,
    formats: state.me.formats,
    onDownload: async (fmt, button) => {
      button.disabled = true;
      try {
        await download(`/api/items/${details.itemId}/data?format=${fmt}`, `${details.name}.${fmt}`);
      } catch (err) {
        $("content-error").textContent = err.message;
      } finally {
        button.disabled = false;
      }
    },
  });
}

// -- popups ---------------------------------------------------------------------------------------------------

function formatValue(value) {
  if (value === null || value === undefined || value === "") return "-";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(4);
  return String(value);
}

async function showPopup(event) {
  const hit = state.mapView.featureAt(event.point);
  if (!hit || !hit.details) {
    state.mapView.closePopup();
    return;
  }
  const { details, feature } = hit;
  const fid = feature.properties._fid ?? feature.id;
  const params = { src: details.src, _fid: fid };
  if (details.layer) params.layer = details.layer;
  let attributes;
  try {
    attributes = (await api(`/viewer/api/feature?${new URLSearchParams(params)}`)).attributes;
  } catch (err) {
    attributes = { error: err.message };
  }
  const node = document.createElement("div");
  node.className = "popup";
  const title = document.createElement("h3");
  const list = document.createElement("dl");
  const add = (name, value) => {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = formatValue(value);
    dd.dataset.field = name;
    list.append(dt, dd);
  };
  const result = details.result;
  if (result) {
    const label = attributes[result.labelField];
    title.textContent = label ? String(label) : "Not classified";
    add("Label", label);
    add("Confidence", attributes[result.confidenceField]);
    add("Coverage", attributes[result.coverageField]);
    const shown = new Set([result.labelField, result.confidenceField, result.coverageField]);
    for (const [k, v] of Object.entries(attributes)) if (!shown.has(k)) add(k, v);
  } else {
    title.textContent = `${details.name}: feature ${fid}`;
    for (const [k, v] of Object.entries(attributes)) add(k, v);
  }
  node.append(title, list);
  state.mapView.popup(event.lngLat, node);
}

// -- uploads --------------------------------------------------------------------------------------------------

$("upload-file").addEventListener("change", () => {
  const file = $("upload-file").files[0];
  if (!file) return;
  const kind = kindForFile(file.name);
  if (kind) $("upload-kind").value = kind;
  $("upload-name").value = itemName(file.name);
  $("upload-error").textContent = kind ? "" : `${file.name}: choose its kind; the suffix does not say.`;
});

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  const error = $("upload-error");
  if (!file) {
    error.textContent = "Choose a file to upload.";
    $("upload-file").setAttribute("aria-invalid", "true");
    return;
  }
  $("upload-file").removeAttribute("aria-invalid");
  error.textContent = "";
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  $("upload-button").disabled = true;
  try {
    const item = await uploadFile(file, $("upload-kind").value, $("upload-name").value.trim(), (p) => {
      progress.value = p;
      $("upload-percent").textContent = `${p}%`;
    });
    $("upload-percent").textContent = `Uploaded ${item.name}.`;
    $("upload").reset();
    await loadLayers();
    const layer = state.layers.find((l) => l.itemId === item.id);
    if (layer && layer.kind !== "model") await showLayer(layer);
  } catch (err) {
    error.textContent = err.message;
    $("upload-percent").textContent = "";
  } finally {
    progress.hidden = true;
    $("upload-button").disabled = false;
  }
});

// -- the tool -------------------------------------------------------------------------------------------------

state.tool = new ToolPane($("tool"));
const form = $("tool");

for (const name of ["inputRaster", "inputFeatures"]) {
  form.elements[name].addEventListener("change", async () => {
    state.tool.suggestName();
    checkOutputName();
    const layer = state.tool.layerOf(form.elements[name]);
    if (layer && !state.mapView.has(layerKey(layer))) await showLayer(layer);
  });
}

form.elements.model.addEventListener("change", () => loadModelArguments());
form.elements.outputName.addEventListener("input", () => checkOutputName());

/** A result name that exists is flagged as it is typed, before anything is submitted. */
function checkOutputName() {
  const name = form.elements.outputName.value.trim();
  const errors = validateClassify({ ...state.tool.values(), inputRaster: true, model: true }, { taken: takenNames() });
  const message = errors.outputName && name ? errors.outputName : "";
  $("e-outputName").textContent = message;
  if (message) form.elements.outputName.setAttribute("aria-invalid", "true");
  else form.elements.outputName.removeAttribute("aria-invalid");
}

async function loadModelArguments() {
  const token = ++state.modelToken;
  const model = state.tool.values().model;
  $("e-model").textContent = "";
  if (!model) {
    state.tool.setArguments(null);
    $("model-status").textContent = "";
    return;
  }
  $("model-status").textContent = "Reading the model's arguments (Query Deep Learning Model Info)...";
  try {
    const info = await jobs.modelInfo(model);
    if (token !== state.modelToken) return;
    state.tool.setArguments(info);
    const classes = (info.Classes || []).map((c) => c.Name).join(", ");
    $("model-status").textContent = `${info.ModelName || "Model"} (${info.Framework}): ${classes || "no classes"}.`;
  } catch (err) {
    if (token !== state.modelToken) return;
    state.tool.setArguments(null);
    $("model-status").textContent = "";
    $("e-model").textContent = err.message;
  }
}

$("use-map-extent").addEventListener("click", () => state.tool.setExtent(state.mapView.extent()));
$("clear-extent").addEventListener("click", () => state.tool.setExtent({ xmin: "", ymin: "", xmax: "", ymax: "" }));

function showJob(job) {
  $("job").hidden = false;
  $("job-status").textContent = job.error && job.final ? `${job.words}: ${job.error}` : job.words;
  $("job-progress").value = job.percent;
  $("job-percent").textContent = `${job.percent}%`;
  $("job-cancel").disabled = job.final;
  $("job-messages").replaceChildren(
    ...job.messages.map((m) => Object.assign(document.createElement("li"), { className: m.kind, textContent: m.text })),
  );
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  timings.runClicked = performance.now();
  const values = state.tool.values();
  $("run-error").textContent = "";
  const errors = validateClassify(values, { taken: takenNames(), argumentSpecs: state.tool.argumentSpecs });
  const first = state.tool.showErrors(errors);
  if (first) {
    first.focus();
    $("run-error").textContent = "Fix the fields marked above.";
    return;
  }
  $("run").disabled = true;
  let jobId;
  try {
    jobId = await jobs.submit(CLASSIFY, classifyParams(values));
  } catch (err) {
    const field = fieldOfMessage(err.message);
    if (field) state.tool.showErrors({ [field]: err.message });
    $("run-error").textContent = err.message;
    $("run").disabled = false;
    return;
  }
  state.job = jobId;
  timings.submitted = performance.now();
  showJob({ words: "Submitted", percent: 0, messages: [], final: false });
  let final;
  try {
    final = await jobs.watch(CLASSIFY, jobId, (job) => showJob(job));
  } catch (err) {
    $("job-status").textContent = err.message;
    $("run").disabled = false;
    return;
  }
  $("run").disabled = false;
  if (!final.succeeded) return;
  timings.succeeded = performance.now();
  await loadLayers();
  loadContent();
  const layer = state.layers.find((l) => l.kind === "result" && l.jobId === jobId);
  if (!layer) {
    $("job-status").textContent = "Succeeded, but the result is not in My Content (was it deleted?).";
    return;
  }
  const details = await showLayer(layer);
  if (details) {
    await state.mapView.idle();
    timings.resultShown = performance.now();
    timings.runToResult = timings.resultShown - timings.runClicked;
    $("job-status").textContent = `Succeeded: ${layer.name} is on the map.`;
  }
});

$("job-cancel").addEventListener("click", async () => {
  if (!state.job) return;
  $("job-cancel").disabled = true;
  try {
    showJob(await jobs.cancel(CLASSIFY, state.job));
  } catch (err) {
    $("job-status").textContent = err.message;
  }
});

// -- My Content -----------------------------------------------------------------------------------------------

async function loadContent() {
  let reply;
  try {
    reply = await api("/viewer/api/results");
  } catch (err) {
    $("content-error").textContent = err.message;
    return;
  }
  $("content-error").textContent = "";
  renderContent($("content-table"), reply.results, {
    onShow: (r) => showLayer(r),
    onEvaluate: (r, opener) => openEvaluation(r, opener),
    onError: (message) => {
      $("content-error").textContent = message;
    },
    onChanged: async (change) => {
      if (change.deleted) hideLayer(change.deleted);
      if (change.renamed && state.legendKey === layerKey(change.renamed)) $("legend-title").textContent = change.name;
      const evaluated = state.evaluation?.result.itemId;
      if (change.deleted && change.deleted.itemId === evaluated) closeEvaluation({ refocus: false });
      if (change.renamed && change.renamed.itemId === evaluated) {
        state.evaluation.result = { ...state.evaluation.result, name: change.name };
        $("evaluation-title").textContent = `Evaluate ${change.name}`;
      }
      await Promise.all([loadLayers(), loadContent()]);
    },
  });
}

// -- evaluating a result --------------------------------------------------------------------------------------

function clearEvaluation() {
  $("evaluation-figures").hidden = true;
  $("evaluation-open").hidden = true;
  $("evaluation-error").textContent = "";
  $("evaluation-truth").removeAttribute("aria-invalid");
  const image = $("evaluation-matrix");
  image.removeAttribute("src");
  image.alt = "";
  if (state.evaluation?.imageUrl) URL.revokeObjectURL(state.evaluation.imageUrl);
  if (state.evaluation) state.evaluation.imageUrl = null;
}

/** Open the panel for ``result``: its fields (less those the run wrote) become the truth field's choices. */
async function openEvaluation(result, opener) {
  clearEvaluation();
  const token = (state.evaluation?.token ?? 0) + 1;
  state.evaluation = { result, details: null, opener, imageUrl: null, token };
  $("evaluation").hidden = false;
  $("evaluation-title").textContent = `Evaluate ${result.name}`;
  $("evaluation-status").textContent = "Reading the result's fields...";
  const select = $("evaluation-truth");
  select.replaceChildren();
  $("evaluation-run").disabled = true;
  let details;
  try {
    const query = result.layer ? { src: result.src, layer: result.layer } : { src: result.src };
    details = await api(`/viewer/api/layer?${new URLSearchParams(query)}`);
  } catch (err) {
    if (token !== state.evaluation?.token) return;
    $("evaluation-status").textContent = "";
    $("evaluation-error").textContent = err.message;
    return;
  }
  if (token !== state.evaluation?.token) return;
  state.evaluation.details = details;
  const candidates = truthCandidates(details.vector?.fields || [], details.result || {});
  select.replaceChildren(...candidates.map((f) => new Option(f, f)));
  select.value = guessTruthField(candidates);
  $("evaluation-run").disabled = candidates.length === 0;
  $("evaluation-status").textContent = candidates.length
    ? `Choose the field that holds the truth, then Evaluate (${details.result?.labelField || "ClassLabel"} is compared with it).`
    : "This result has no field besides those the run wrote: there is no truth to compare with.";
  $("evaluation").scrollIntoView({ block: "nearest" });
  select.focus();
}

function closeEvaluation({ refocus = true } = {}) {
  clearEvaluation();
  const opener = state.evaluation?.opener;
  state.evaluation = null;
  $("evaluation").hidden = true;
  $("evaluation-status").textContent = "";
  if (refocus && opener?.isConnected) opener.focus();
}

$("evaluation-close").addEventListener("click", () => closeEvaluation());
$("legend-evaluate").addEventListener("click", (event) => {
  const details = state.legendDetails;
  if (!details?.itemId) return;
  $("content-panel").open = true;
  const name = $("legend-title").textContent || details.name; // a rename since is shown in the legend's title
  openEvaluation({ ...details, name }, event.currentTarget);
});
$("evaluation").addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeEvaluation();
});

$("evaluation-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const current = state.evaluation;
  const truth = $("evaluation-truth").value;
  if (!current?.details || !truth) return;
  clearEvaluation();
  const token = current.token;
  const { result } = current;
  const paths = evaluationPaths(result.itemId, truth, current.details.result?.labelField);
  $("evaluation-run").disabled = true;
  $("evaluation-status").textContent = `Comparing ${current.details.result?.labelField || "the labels"} with ${truth}...`;
  try {
    const data = await api(paths.json);
    if (token !== state.evaluation?.token) return;
    $("evaluation-accuracy").textContent = percentText(data.accuracy);
    $("evaluation-kappa").textContent = kappaText(data.kappa);
    $("evaluation-counts").textContent = countsText(data);
    $("evaluation-figures").hidden = false;
    globalThis.geoclassifyViewer.evaluation = data;
    $("evaluation-status").textContent = data.warnings?.length ? data.warnings.join(" ") : "Drawing the confusion matrix...";
    const url = await fetchImage(paths.png);
    if (token !== state.evaluation?.token) {
      URL.revokeObjectURL(url);
      return;
    }
    state.evaluation.imageUrl = url;
    const image = $("evaluation-matrix");
    image.alt = matrixAlt(result.name, data);
    image.src = url;
    await image.decode();
    $("evaluation-open").href = url;
    $("evaluation-open").hidden = false;
    if (!data.warnings?.length) $("evaluation-status").textContent = "The picture opens full size in a new tab.";
  } catch (err) {
    if (token !== state.evaluation?.token) return;
    $("evaluation-status").textContent = "";
    $("evaluation-error").textContent = err.message;
    if (err.status === 400 && $("evaluation-figures").hidden) $("evaluation-truth").setAttribute("aria-invalid", "true");
  } finally {
    if (token === state.evaluation?.token) $("evaluation-run").disabled = false;
  }
});

// -- start ----------------------------------------------------------------------------------------------------

if (session.token) signIn(session.token, { quiet: true });
globalThis.geoclassifyViewer.ready = true;
export { ApiError };
