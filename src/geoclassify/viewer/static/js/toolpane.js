// The tool pane's DOM: its selects filled from the layers list, one input per model argument, the values read
// back in Esri's names, and each problem shown next to its field.

import { argumentFields, defaultOutputName, layerStem } from "./params.js";

const $ = (id) => document.getElementById(id);

function option(value, text) {
  const node = document.createElement("option");
  node.value = value;
  node.textContent = text;
  return node;
}

function label(layer) {
  return layer.itemId ? layer.name : `${layer.name} (data folder)`;
}

export class ToolPane {
  constructor(form) {
    this.form = form;
    this.layers = [];
    this.taken = new Set();
    this.argumentSpecs = [];
    this.outputEdited = false;
    form.elements.outputName.addEventListener("input", () => {
      this.outputEdited = true;
    });
  }

  /** The layers a field can take, by kind; keeps the current choices where they still exist. */
  setLayers(layers, taken) {
    this.layers = layers;
    this.taken = taken;
    const fill = (select, kinds, empty) => {
      const current = select.value;
      select.replaceChildren(option("", empty));
      for (const layer of layers.filter((l) => kinds.includes(l.kind))) {
        select.append(option(JSON.stringify(layer.reference), label(layer)));
      }
      if ([...select.options].some((o) => o.value === current)) select.value = current;
    };
    fill(this.form.elements.inputRaster, ["raster"], "Choose imagery");
    fill(this.form.elements.inputFeatures, ["features", "result"], "None: each image is one object");
    fill(this.form.elements.model, ["model"], "Choose a model");
    this.suggestName();
  }

  layerOf(select) {
    const value = select.value;
    return value ? this.layers.find((l) => JSON.stringify(l.reference) === value) || null : null;
  }

  /** Map Viewer's default result name from the feature layer (or the imagery), unless the user typed one. */
  suggestName() {
    if (this.outputEdited) return;
    const base = this.layerOf(this.form.elements.inputFeatures) || this.layerOf(this.form.elements.inputRaster);
    this.form.elements.outputName.value = base ? defaultOutputName(layerStem(base), this.taken) : "";
  }

  /** One input per argument of the model's ParameterInfo, each with its default and description. */
  setArguments(modelInfo) {
    const box = $("argument-fields");
    this.argumentSpecs = modelInfo ? argumentFields(modelInfo) : [];
    box.replaceChildren();
    if (!modelInfo) {
      box.append(Object.assign(document.createElement("p"), { className: "hint", textContent: "Choose a model to see its arguments." }));
      return;
    }
    if (!this.argumentSpecs.length) {
      box.append(Object.assign(document.createElement("p"), { className: "hint", textContent: "This model takes no arguments." }));
      return;
    }
    for (const spec of this.argumentSpecs) {
      const id = `arg-${spec.name}`;
      const field = document.createElement("div");
      field.className = "field";
      const input = document.createElement("input");
      input.id = id;
      input.name = `modelArguments.${spec.name}`;
      input.dataset.argument = spec.name;
      const help = document.createElement("p");
      help.className = "hint";
      help.id = `${id}-help`;
      const description = spec.description && !/[.!?]$/.test(spec.description) ? `${spec.description}.` : spec.description;
      const defaultText = spec.defaultValue === null ? "" : ` Default: ${spec.defaultValue}.`;
      help.textContent = `${description}${defaultText}`.trim();
      const error = document.createElement("p");
      error.className = "error";
      error.id = `e-modelArguments.${spec.name}`;
      input.setAttribute("aria-describedby", `${help.id} ${error.id}`);
      const text = document.createElement("label");
      text.htmlFor = id;
      text.textContent = spec.label;
      if (spec.kind === "boolean") {
        input.type = "checkbox";
        input.checked = spec.value === true;
        text.className = "check";
        text.prepend(input);
        field.append(text, help, error);
      } else {
        input.value = spec.value;
        if (spec.kind === "number") input.inputMode = "decimal";
        field.append(text, input, help, error);
      }
      box.append(field);
    }
  }

  /** The form's values: references as objects, arguments and extent as objects of their parts. */
  values() {
    const el = this.form.elements;
    const parse = (v) => (v ? JSON.parse(v) : null);
    const modelArguments = {};
    for (const spec of this.argumentSpecs) {
      const input = this.form.querySelector(`[data-argument="${CSS.escape(spec.name)}"]`);
      if (input) modelArguments[spec.name] = input.type === "checkbox" ? String(input.checked) : input.value;
    }
    const extent = {};
    for (const side of ["xmin", "ymin", "xmax", "ymax"]) extent[side] = el[`extent.${side}`].value;
    return {
      inputRaster: parse(el.inputRaster.value),
      inputFeatures: parse(el.inputFeatures.value),
      model: parse(el.model.value),
      modelArguments,
      classLabelField: el.classLabelField.value,
      processAllRasterItems: el.processAllRasterItems.value,
      outputName: el.outputName.value,
      extent,
      cellSize: el.cellSize.value,
      resamplingMethod: el.resamplingMethod.value,
      processorType: el.processorType.value,
      parallelProcessingFactor: el.parallelProcessingFactor.value,
      retryOnFailures: el.retryOnFailures.value,
    };
  }

  setExtent(extent) {
    for (const [side, value] of Object.entries(extent)) this.form.elements[`extent.${side}`].value = value ?? "";
  }

  /** Show each message next to its field (and mark the field invalid); clears the others. */
  showErrors(errors) {
    for (const node of this.form.querySelectorAll(".error[id^='e-']")) node.textContent = "";
    for (const node of this.form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    let first = null;
    for (const [field, message] of Object.entries(errors)) {
      const box = document.getElementById(`e-${field}`);
      if (box) box.textContent = message;
      const control =
        field === "extent"
          ? this.form.elements["extent.xmin"]
          : field.startsWith("modelArguments.")
            ? this.form.querySelector(`[data-argument="${CSS.escape(field.slice(15))}"]`)
            : field === "modelArguments"
              ? this.form.querySelector("[data-argument]")
              : this.form.elements[field];
      if (control && control.setAttribute) {
        control.setAttribute("aria-invalid", "true");
        first ??= control;
      }
    }
    return first;
  }
}
