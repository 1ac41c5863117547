// Evaluating a result against a truth field (My Content's Evaluate): the panel's words and the two requests, the
// figures as JSON and the confusion matrix as a PNG. The picture is fetched with the token in a header and shown
// from a blob URL, as downloads are: a token never goes into a link.

import { ApiError, authHeaders, errorMessage } from "./api.js";

/** Fields a run writes: never the truth. */
function writtenFields(result = {}) {
  return new Set([result.labelField, result.valueField, result.confidenceField, result.coverageField].filter(Boolean));
}

/** The fields a user may pick as the truth: the layer's own, without those the run wrote. */
export function truthCandidates(fields = [], result = {}) {
  const written = writtenFields(result);
  return fields.filter((f) => !written.has(f) && f !== "_fid");
}

/** The field to offer first: one named like a truth (truth, reference, ground truth, label), else the first. */
export function guessTruthField(candidates = []) {
  const patterns = [/^truth$/i, /truth/i, /^(reference|ref|ground_?truth|gt)$/i, /(class|label)/i];
  for (const pattern of patterns) {
    const hit = candidates.find((f) => pattern.test(f));
    if (hit) return hit;
  }
  return candidates[0] ?? "";
}

export function percentText(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "n/a" : `${(100 * value).toFixed(1)}%`;
}

export function kappaText(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "n/a" : value.toFixed(3);
}

/** What the evaluation compared, in one line: "121 compared, 3 not classified, 2 without truth". */
export function countsText(data) {
  const parts = [`${Number(data.evaluated).toLocaleString("en-US")} of ${Number(data.total).toLocaleString("en-US")} compared`];
  if (data.unclassified) parts.push(`${data.unclassified} not classified`);
  if (data.no_truth) parts.push(`${data.no_truth} without truth`);
  return parts.join(", ");
}

/** The picture's alt text: what it is and its two headline figures, for those who cannot see it. */
export function matrixAlt(name, data) {
  return (
    `Confusion matrix of ${name}: ${data.label_field} against ${data.truth_field}, ` +
    `accuracy ${percentText(data.accuracy)}, Cohen's kappa ${kappaText(data.kappa)}, ` +
    `classes ${data.confusion_matrix.labels.join(", ") || "none"}`
  );
}

export function evaluationPaths(itemId, truthField, labelField) {
  const query = new URLSearchParams({ truthField });
  if (labelField) query.set("labelField", labelField);
  const base = `/api/items/${encodeURIComponent(itemId)}/evaluation`;
  return { json: `${base}?${query}`, png: `${base}.png?${query}` };
}

/** A picture from the server as a blob URL (for the caller to revoke). */
export async function fetchImage(path) {
  let reply;
  try {
    reply = await fetch(path, { headers: { Accept: "image/png", ...authHeaders() } });
  } catch {
    throw new ApiError("the server cannot be reached; is geoclassify serve still running?", 0);
  }
  if (!reply.ok) {
    let body = null;
    try {
      body = await reply.json();
    } catch {
      body = null;
    }
    throw new ApiError(errorMessage(body, reply.status, reply.statusText), reply.status);
  }
  return URL.createObjectURL(await reply.blob());
}
