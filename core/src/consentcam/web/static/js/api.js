// The public JSON API, as every page uses it: same paths as any integrator, cookie session, CSRF header on writes,
// and errors turned into ApiError objects with words a person can read (never a raw JSON blob).

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;
let openapi = null;

export class ApiError extends Error {
  constructor(status, problem = {}) {
    const title = typeof problem.title === "string" && problem.title ? problem.title : friendlyTitle(status);
    const detail = typeof problem.detail === "string" ? problem.detail : friendlyDetail(status);
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.slug = typeof problem.type === "string" ? problem.type.split("/").pop() : "";
    this.errors = Array.isArray(problem.errors) ? problem.errors.filter((e) => e && typeof e.msg === "string") : [];
    this.rule = typeof problem.rule === "string" ? problem.rule : "";  // which consent rule refused (live views)
  }

  get signedOut() { return this.status === 401; }
  get suspended() { return this.slug === "agency-suspended"; }
}

function friendlyTitle(status) {
  if (status === 0) return "No connection";
  if (status === 401) return "Not signed in";
  if (status === 403) return "Not allowed";
  if (status === 404) return "Not found";
  if (status === 410) return "No longer available";
  if (status === 413) return "Too large";
  if (status === 429) return "Too many attempts";
  if (status >= 500) return "The server ran into a problem";
  return "Something went wrong";
}

function friendlyDetail(status) {
  if (status === 0) return "The server could not be reached. Check your connection and try again.";
  if (status >= 500) return "Nothing you did caused this. Please try again in a minute.";
  return "";
}

export function csrf() {
  const match = document.cookie.match(/(?:^|;\s*)consentcam_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : csrfToken;
}

export function rememberCsrf(token) { csrfToken = token || null; }

async function problemOf(response) {
  let problem = {};
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      if (body && typeof body === "object") problem = body;
    } catch { /* a broken body still gets words below */ }
  }
  return new ApiError(response.status, problem);
}

/** Call the API; returns parsed JSON (or null for 204, or the Response with {raw: true}); throws ApiError. */
export async function api(method, path, { body, headers = {}, raw = false, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin", signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  if (UNSAFE.has(method) && csrf()) init.headers["X-CSRF-Token"] = csrf();
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, {});
  }
  if (!response.ok) throw await problemOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response;
}

export const get = (path, options) => api("GET", path, options);
export const post = (path, body, options = {}) => api("POST", path, { ...options, body });
export const put = (path, body, options = {}) => api("PUT", path, { ...options, body });
export const del = (path, options) => api("DELETE", path, options);

/** The signed-in user of this browser, or null. */
export async function currentSession() {
  try {
    const session = await get("/api/v1/auth/session");
    rememberCsrf(session.csrf_token);
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/** Does this server have the operation? (The OpenAPI document lists every one.) */
export async function supports(method, path) {
  if (!openapi) {
    openapi = get("/api/v1/openapi.json").catch(() => ({ paths: {} }));
  }
  const doc = await openapi;
  return Boolean(doc.paths && doc.paths[path] && doc.paths[path][method.toLowerCase()]);
}

export { problemOf };
