// Sign in with a cookie session, then go where the person was going (same site only) or to their role's page.
import { post, rememberCsrf } from "./api.js";
import { $, clearFieldErrors, errorBox, homeOf, initHeader, markFieldErrors, show } from "./ui.js";

const form = $("#login-form");
const errors = $("#login-errors");

function nextPage(role) {
  const next = new URLSearchParams(location.search).get("next");
  // Only a path on this site: never an open redirect.
  if (next && /^\/(?!\/)[A-Za-z0-9/_\-.]*$/.test(next) && next !== "/login") return next;
  return homeOf(role);
}

initHeader().then((session) => {
  if (session) {
    show($("#login-status"), Object.assign(document.createElement("div"), { className: "alert alert--info", textContent: `You are already signed in as ${session.user.name || session.user.role}.` }));
  }
}).catch(() => {});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  errors.replaceChildren();
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const session = await post("/api/v1/auth/session", { email: form.email.value.trim(), password: form.password.value });
    rememberCsrf(session.csrf_token);
    location.assign(nextPage(session.user.role));
  } catch (error) {
    markFieldErrors(form, error);
    show(errors, errorBox(error));
    form.password.select();
  } finally {
    button.disabled = false;
  }
});
