// Register as a camera owner, then sign in at once and open the owner portal.
import { post, rememberCsrf } from "./api.js";
import { $, clearFieldErrors, errorBox, initHeader, markFieldErrors, show } from "./ui.js";

const form = $("#register-form");
const errors = $("#register-errors");
initHeader().catch(() => {});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  errors.replaceChildren();
  const button = form.querySelector('button[type="submit"]');
  const body = {
    name: form.elements.namedItem("name").value.trim(),
    email: form.email.value.trim(),
    password: form.password.value,
    notify: { email: form.notify_email.checked, sms: form.notify_sms.checked },
  };
  if (form.phone.value.trim()) body.phone = form.phone.value.trim();
  button.disabled = true;
  try {
    await post("/api/v1/auth/owners", body);
    const session = await post("/api/v1/auth/session", { email: body.email, password: body.password });
    rememberCsrf(session.csrf_token);
    location.assign("/owner");
  } catch (error) {
    markFieldErrors(form, error);
    show(errors, errorBox(error, { context: "Not registered" }));
  } finally {
    button.disabled = false;
  }
});
