// Talking to the server: the session's token (sessionStorage, gone when the tab closes) and one fetch wrapper
// that turns every API's error shape (Esri's {"error": ...}, a problem document) into the server's own words.

const KEY = "geoclassify.token";

export const session = {
  get token() {
    return globalThis.sessionStorage?.getItem(KEY) || null;
  },
  set(token) {
    globalThis.sessionStorage.setItem(KEY, token);
  },
  clear() {
    globalThis.sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The message of an error reply, as the server worded it. */
export function errorMessage(body, status = 0, statusText = "") {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) {
      const details = (body.error.details || []).filter((d) => d && d !== body.error.message);
      return [body.error.message, ...details].join(" ");
    }
    if (typeof body.detail === "string" && body.detail) return body.detail;
    if (typeof body.description === "string" && body.description) return body.description;
    if (typeof body.title === "string" && body.title) return body.title;
  }
  return `${status || ""} ${statusText || "the server did not answer"}`.trim();
}

export function authHeaders(token = session.token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** JSON from the server; `form` is sent form-encoded (as Esri's clients send GP parameters), `json` as JSON. */
export async function api(path, { method = "GET", form, json, token, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(token ?? session.token) };
  const init = { method, headers, signal };
  if (form) init.body = new URLSearchParams(form);
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    headers["Content-Type"] = "application/json";
  }
  let reply;
  try {
    reply = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("the server cannot be reached; is geoclassify serve still running?", 0);
  }
  const text = await reply.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!reply.ok || (body && body.error)) {
    throw new ApiError(errorMessage(body, reply.status, reply.statusText), reply.status);
  }
  return body;
}

/** A file from the server saved under `filename` (the token travels in a header, never in a link). */
export async function download(path, filename) {
  const reply = await fetch(path, { headers: authHeaders() });
  if (!reply.ok) {
    let body = null;
    try {
      body = await reply.json();
    } catch {
      body = null;
    }
    throw new ApiError(errorMessage(body, reply.status, reply.statusText), reply.status);
  }
  const disposition = reply.headers.get("content-disposition") || "";
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await reply.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = named ? named[1] : filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return link.download;
}
