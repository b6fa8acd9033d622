// The admin API from the browser: the key typed at login rides along as a Bearer token.
// The key lives in sessionStorage only: it goes when the tab closes, never into a URL.

const STORAGE_KEY = "segue.adminKey";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.body = body;
  }
}

export const auth = {
  key: () => sessionStorage.getItem(STORAGE_KEY),
  set: (key) => sessionStorage.setItem(STORAGE_KEY, key),
  clear: () => sessionStorage.removeItem(STORAGE_KEY),
};

let onUnauthorized = () => {};

/** What to do when the server refuses the key (the app logs out). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function request(path, { query, key, as = "json", signal } = {}) {
  const token = key || auth.key();
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(url(path, query), { headers, signal, cache: "no-store" });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = new ApiError(response.status, body);
    if (response.status === 401 && !key) onUnauthorized(error);
    throw error;
  }
  if (as === "text") return response.text();
  if (as === "blob") return response.blob();
  return response.json();
}

/** GET a JSON document (admin key). */
export const get = (path, options) => request(path, options);

/** GET a text document, e.g. /metrics. */
export const getText = (path, options) => request(path, { ...options, as: "text" });

/** GET a file to download (CSV). */
export const getBlob = (path, options) => request(path, { ...options, as: "blob" });

let spec = null;

/** Whether this server has a route (read from its OpenAPI document, once per page load). */
export async function hasRoute(method, path) {
  if (spec === null) spec = await request("/openapi.json");
  const entry = spec.paths && spec.paths[path];
  return Boolean(entry && entry[method.toLowerCase()]);
}

/** Save `blob` as a file called `name` (the browser's download, no new window). */
export function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
