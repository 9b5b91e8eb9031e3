// Small DOM helpers shared by the pages. Text always goes in as text (never innerHTML), so data cannot inject markup.
import { ApiError, currentSession, del } from "./api.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** h("p", {class: "x", onclick: fn}, "text", child) -> element. */
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "line", "text", "path", "title", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && !svg && typeof value !== "string") el[key] = value;
    else el.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function config() {
  const meta = document.querySelector('meta[name="consentcam-config"]');
  try { return JSON.parse(meta ? meta.content : "{}"); } catch { return {}; }
}

/** Replace the contents of a container. */
export function show(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return container;
}

/** An error as a message a person can act on. */
export function errorBox(error, { context } = {}) {
  const e = error instanceof ApiError ? error : new ApiError(500, { title: "Something went wrong", detail: String(error && error.message || error) });
  const parts = [h("p", { class: "alert__title" }, context ? `${context}: ${e.title}` : e.title)];
  if (e.detail && e.detail !== e.title && !e.errors.length) parts.push(h("p", {}, e.detail));
  if (e.errors.length) parts.push(h("ul", {}, e.errors.map((x) => h("li", {}, fieldName(x.loc) ? `${fieldName(x.loc)}: ${x.msg}` : x.msg))));
  if (e.signedOut) parts.push(h("p", {}, h("a", { href: `/login?next=${encodeURIComponent(location.pathname)}` }, "Sign in again")));
  return h("div", { class: `alert ${e.suspended ? "alert--warn" : "alert--error"}`, role: "alert" }, parts);
}

export function showError(container, error, options) {
  if (!(error instanceof ApiError)) console.error(error);
  show(container, errorBox(error, options));
}

export function notice(container, text, kind = "ok") {
  show(container, h("div", { class: `alert alert--${kind}` }, h("p", {}, text)));
}

function fieldName(loc) {
  if (!Array.isArray(loc)) return "";
  const parts = loc.filter((p) => p !== "body" && p !== "query");
  return parts.join(" ").replaceAll("_", " ");
}

/** Put the API's field errors next to the inputs they concern (aria-invalid plus a described-by message). */
export function markFieldErrors(form, error, aliases = {}) {
  clearFieldErrors(form);
  if (!(error instanceof ApiError)) return;
  for (const item of error.errors) {
    const loc = (item.loc || []).filter((p) => p !== "body");
    const key = loc.join(".");
    const name = aliases[key] || aliases[loc[0]] || loc[loc.length - 1];
    const input = form.querySelector(`[name="${CSS.escape(String(name))}"]`);
    if (!input) continue;
    const id = `${input.id || input.name}-error`;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby") || "", id].join(" ").trim());
    input.insertAdjacentElement("afterend", h("p", { class: "field-error", id }, item.msg));
  }
}

export function clearFieldErrors(form) {
  for (const el of $$(".field-error", form)) {
    const input = form.querySelector(`[aria-describedby~="${el.id}"]`);
    if (input) {
      input.removeAttribute("aria-invalid");
      const rest = input.getAttribute("aria-describedby").split(" ").filter((x) => x !== el.id).join(" ");
      if (rest) input.setAttribute("aria-describedby", rest); else input.removeAttribute("aria-describedby");
    }
    el.remove();
  }
}

const pad = (n) => String(n).padStart(2, "0");

/** "2026-06-01 03:12" in the viewer's time zone. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function timeOnly(iso) {
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Value for <input type="datetime-local"> from a Date, and back to RFC 3339 with the local offset. */
export function toLocalInput(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${value.length === 16 ? `${value}:00` : value}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function badge(status) {
  const words = { pending_approval: "waiting for approval", notified: "waiting for you" };
  return h("span", { class: `badge badge--${status}` }, words[status] || status.replaceAll("_", " "));
}

/** Ask before something that cannot be undone, in a real modal dialog (keyboard and screen reader friendly). */
export function confirmDialog({ title, text, confirm = "Confirm", cancel = "Cancel" }) {
  const dialog = $("#confirm-dialog");
  if (!dialog) return Promise.resolve(window.confirm(`${title}\n\n${text}`));
  $("#confirm-title", dialog).textContent = title;
  $("#confirm-text", dialog).textContent = text;
  $("#confirm-yes", dialog).textContent = confirm;
  $("#confirm-no", dialog).textContent = cancel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

const HOMES = { owner: "/owner", investigator: "/console", supervisor: "/supervisor", auditor: "/console", admin: "/console" };
export const homeOf = (role) => HOMES[role] || "/";

/** Fill the header's session area; returns the session (or null). */
export async function initHeader() {
  const slot = $("#session");
  let session = null;
  try {
    session = await currentSession();
  } catch (error) {
    if (slot) show(slot, h("span", { class: "who" }, error instanceof ApiError && error.suspended ? "Agency suspended" : ""));
    throw error;
  }
  if (!slot) return session;
  if (!session) {
    show(slot, h("a", { href: `/login?next=${encodeURIComponent(location.pathname)}` }, "Sign in"));
    return null;
  }
  const role = session.user.role;
  show(slot,
    h("span", { class: "who" }, `${session.user.name || "Signed in"} (${role})`),
    h("button", {
      type: "button", class: "link", onclick: async () => {
        try { await del("/api/v1/auth/session"); } catch { /* signed out anyway below */ }
        location.assign("/");
      },
    }, "Sign out"));
  return session;
}

/**
 * Make sure someone with one of `roles` is signed in; otherwise explain in the page what to do.
 * Returns the session or null (and then the page has already said why).
 */
export async function requireRole(roles, { alert = $("#page-alert"), app = $(".needs-session"), what = "this page" } = {}) {
  let session;
  try {
    session = await initHeader();
  } catch (error) {
    if (app) app.hidden = true;
    showError(alert, error);
    return null;
  }
  if (!session) {
    if (app) app.hidden = true;
    show(alert, h("div", { class: "alert alert--info", role: "status" },
      h("p", { class: "alert__title" }, `Sign in to use ${what}.`),
      h("p", {}, h("a", { class: "button", href: `/login?next=${encodeURIComponent(location.pathname)}` }, "Sign in"))));
    return null;
  }
  if (!roles.includes(session.user.role)) {
    if (app) app.hidden = true;
    show(alert, h("div", { class: "alert alert--warn", role: "status" },
      h("p", { class: "alert__title" }, `${what[0].toUpperCase()}${what.slice(1)} is for ${roles.join(" or ")} accounts.`),
      h("p", {}, `You are signed in as ${session.user.role}. `, h("a", { href: homeOf(session.user.role) }, "Go to your page"))));
    return null;
  }
  return session;
}

/** Run an async action for a button: disabled while it runs, errors shown in `alertBox`. */
export async function busy(button, fn, alertBox) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (error) {
    if (alertBox) showError(alertBox, error); else throw error;
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}
