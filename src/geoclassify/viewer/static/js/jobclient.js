// Jobs through the server's Esri GP REST API, as any client runs them: submitJob, poll jobs/<id>, cancel,
// results/<param>. The page has no private way to run a tool.

import { api } from "./api.js";

export const GP = "/arcgis/rest/services/System/RasterAnalysisTools/GPServer";
export const CLASSIFY = "ClassifyObjectsUsingDeepLearning";
export const MODEL_INFO = "QueryDeepLearningModelInfo";
export const FINAL = new Set(["esriJobSucceeded", "esriJobFailed", "esriJobTimedOut", "esriJobCancelled"]);

const MESSAGE_KINDS = {
  esriJobMessageTypeInformative: "info",
  esriJobMessageTypeWarning: "warning",
  esriJobMessageTypeError: "error",
};

const STATUS_WORDS = {
  esriJobSubmitted: "Submitted",
  esriJobWaiting: "Waiting",
  esriJobExecuting: "Running",
  esriJobCancelling: "Cancelling",
  esriJobSucceeded: "Succeeded",
  esriJobFailed: "Failed",
  esriJobTimedOut: "Timed out",
  esriJobCancelled: "Cancelled",
};

/** A jobs/<id> reply as the page shows it: status words, a percent, the messages and, if it failed, why. */
export function jobState(reply) {
  const status = reply.jobStatus;
  const succeeded = status === "esriJobSucceeded";
  const raw = Number(reply.progress?.percent);
  const percent = succeeded ? 100 : Number.isFinite(raw) ? Math.max(0, Math.min(100, Math.round(raw))) : 0;
  const messages = (reply.messages || []).map((m) => ({
    kind: MESSAGE_KINDS[m.type] || "info",
    text: String(m.description ?? ""),
  }));
  const errors = messages.filter((m) => m.kind === "error").map((m) => m.text);
  return {
    id: reply.jobId,
    status,
    words: STATUS_WORDS[status] || String(status),
    final: FINAL.has(status),
    succeeded,
    percent,
    messages,
    error: errors.length ? errors[errors.length - 1] : null,
  };
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

export class JobClient {
  constructor(request = api, { interval = 500 } = {}) {
    this.request = request;
    this.interval = interval;
  }

  async submit(task, params) {
    const reply = await this.request(`${GP}/${task}/submitJob`, { method: "POST", form: { f: "json", ...params } });
    return reply.jobId;
  }

  async status(task, jobId) {
    return jobState(await this.request(`${GP}/${task}/jobs/${encodeURIComponent(jobId)}?f=json`));
  }

  async cancel(task, jobId) {
    const reply = await this.request(`${GP}/${task}/jobs/${encodeURIComponent(jobId)}/cancel`, {
      method: "POST",
      form: { f: "json" },
    });
    return jobState(reply);
  }

  async result(task, jobId, param) {
    const reply = await this.request(`${GP}/${task}/jobs/${encodeURIComponent(jobId)}/results/${param}?f=json`);
    return reply.value;
  }

  /** Poll until the job ends, telling `onUpdate` each state; resolves with the final one. */
  async watch(task, jobId, onUpdate = () => {}, { signal } = {}) {
    for (;;) {
      const state = await this.status(task, jobId);
      onUpdate(state);
      if (state.final || signal?.aborted) return state;
      await sleep(this.interval, signal);
    }
  }

  /** QueryDeepLearningModelInfo for `model` (a reference object): the model's info as parsed JSON. */
  async modelInfo(model, { signal } = {}) {
    const jobId = await this.submit(MODEL_INFO, { model: JSON.stringify(model) });
    const state = await this.watch(MODEL_INFO, jobId, () => {}, { signal });
    if (!state.succeeded) throw new Error(state.error || `reading the model ${state.words.toLowerCase()}`);
    const value = await this.result(MODEL_INFO, jobId, "outModelInfo");
    return JSON.parse(value.modelInfo);
  }
}
