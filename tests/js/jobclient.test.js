// The job client: a GP job's JSON as the page shows it, and the requests it sends (jobclient.js, api.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { errorMessage } from "../../src/geoclassify/viewer/static/js/api.js";
import { CLASSIFY, GP, JobClient, jobState } from "../../src/geoclassify/viewer/static/js/jobclient.js";
import { itemName, kindForFile } from "../../src/geoclassify/viewer/static/js/upload.js";

test("a running job: its words, percent and messages", () => {
  const state = jobState({
    jobId: "j1",
    jobStatus: "esriJobExecuting",
    progress: { percent: 42.6 },
    messages: [
      { type: "esriJobMessageTypeInformative", description: "Executing." },
      { type: "esriJobMessageTypeWarning", description: "3 features outside" },
    ],
  });
  assert.equal(state.words, "Running");
  assert.equal(state.percent, 43);
  assert.equal(state.final, false);
  assert.deepEqual(state.messages.map((m) => m.kind), ["info", "warning"]);
  assert.equal(state.error, null);
});

test("a failed job carries the server's last error; a succeeded one is 100%", () => {
  const failed = jobState({
    jobStatus: "esriJobFailed",
    progress: { percent: 10 },
    messages: [{ type: "esriJobMessageTypeError", description: "model: the package has no .emd" }],
  });
  assert.ok(failed.final && !failed.succeeded);
  assert.equal(failed.error, "model: the package has no .emd");
  const done = jobState({ jobStatus: "esriJobSucceeded", progress: { percent: 99 }, messages: [] });
  assert.equal(done.percent, 100);
  assert.equal(jobState({ jobStatus: "esriJobCancelled" }).words, "Cancelled");
  assert.equal(jobState({ jobStatus: "esriJobSubmitted", progress: { percent: "x" } }).percent, 0);
});

test("the client submits form-encoded JSON parameters and polls until the job ends", async () => {
  const calls = [];
  const replies = [
    { jobId: "j9", jobStatus: "esriJobSubmitted" },
    { jobId: "j9", jobStatus: "esriJobExecuting", progress: { percent: 50 } },
    { jobId: "j9", jobStatus: "esriJobSucceeded" },
  ];
  const client = new JobClient(async (path, init = {}) => {
    calls.push([path, init]);
    return replies.shift();
  }, { interval: 1 });
  const id = await client.submit(CLASSIFY, { model: '{"itemId":"m"}' });
  assert.equal(id, "j9");
  assert.equal(calls[0][0], `${GP}/${CLASSIFY}/submitJob`);
  assert.equal(calls[0][1].method, "POST");
  assert.deepEqual(calls[0][1].form, { f: "json", model: '{"itemId":"m"}' });
  const seen = [];
  const final = await client.watch(CLASSIFY, id, (s) => seen.push(s.percent));
  assert.ok(final.succeeded);
  assert.deepEqual(seen, [50, 100]);
  assert.equal(calls[1][0], `${GP}/${CLASSIFY}/jobs/j9?f=json`);
});

test("model info is read from outModelInfo's JSON text", async () => {
  const replies = {
    "submitJob": { jobId: "m1", jobStatus: "esriJobSubmitted" },
    "jobs/m1?f=json": { jobId: "m1", jobStatus: "esriJobSucceeded" },
    "jobs/m1/results/outModelInfo?f=json": { value: { modelInfo: JSON.stringify({ ModelName: "X", ParameterInfo: [] }) } },
  };
  const client = new JobClient(async (path) => replies[path.split("QueryDeepLearningModelInfo/")[1]], { interval: 1 });
  assert.deepEqual(await client.modelInfo({ itemId: "m" }), { ModelName: "X", ParameterInfo: [] });
});

test("error replies are worded as the server worded them", () => {
  assert.equal(errorMessage({ error: { code: 400, message: "inputRaster is required", details: [] } }, 400), "inputRaster is required");
  assert.equal(errorMessage({ type: "about:blank", title: "Forbidden", status: 403, detail: "outside the roots" }, 403), "outside the roots");
  assert.equal(errorMessage(null, 502, "Bad Gateway"), "502 Bad Gateway");
});

test("an upload's kind and default name come from its file name", () => {
  assert.equal(kindForFile("roof-damage.dlpk"), "model");
  assert.equal(kindForFile("Ortho.TIF"), "raster");
  assert.equal(kindForFile("houses.zip"), "features");
  assert.equal(kindForFile("houses.parquet"), "features");
  assert.equal(kindForFile("notes.txt"), null);
  assert.equal(itemName("C:\\data\\houses.gpkg"), "houses");
  assert.equal(itemName("roof-damage.dlpk"), "roof-damage");
});
