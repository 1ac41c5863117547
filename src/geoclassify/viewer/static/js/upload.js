// Uploads into My Content (POST /api/items, multipart) with progress, and the kind a file is taken for.

import { ApiError, authHeaders, errorMessage } from "./api.js";

const KINDS = [
  ["model", [".dlpk", ".onnx"]],
  ["raster", [".tif", ".tiff", ".img", ".jp2"]],
  ["features", [".zip", ".gpkg", ".geojson", ".json", ".parquet", ".fgb", ".csv"]],
];

/** "model", "raster" or "features" by the file's suffix (a .zip is a zipped shapefile), null if unknown. */
export function kindForFile(filename) {
  const name = String(filename || "").toLowerCase();
  for (const [kind, suffixes] of KINDS) if (suffixes.some((s) => name.endsWith(s))) return kind;
  return null;
}

/** The file's name without its suffix (the item's default name). */
export function itemName(filename) {
  const base = String(filename || "").split(/[\\/]/).pop();
  return base.replace(/\.(tar\.gz|[^.]+)$/i, "") || base;
}

/** Upload `file` as a `kind` item named `name`; `onProgress(percent)` as it goes. Resolves with the item. */
export function uploadFile(file, kind, name, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("kind", kind);
    if (name) form.append("name", name);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/items");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(Math.round((100 * e.loaded) / e.total));
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(100);
        resolve(body);
      } else {
        reject(new ApiError(errorMessage(body, xhr.status, xhr.statusText), xhr.status));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError("the upload was cut off; is the server still running?", 0)));
    xhr.send(form);
  });
}
