// Owner's edge relays: pair with a one-time code, see each relay's cameras and every live view (who, when, why,
// how long, why it ended), pause all live access through a relay with one switch, unpair it.
import { api, del, get, post } from "./api.js";
import { $, busy, confirmDialog, h, notice, requireRole, show, showError, when } from "./ui.js";

const alertBox = $("#page-alert");
const statusBox = $("#page-status");
const LIVE = { always: "live view allowed", emergency_only: "live view only in emergencies", never: "no live view" };

function sessionRow(s) {
  const state = s.active ? "open now" : `ended ${when(s.ended_at || s.ends_at)}${s.end_reason ? ` (${s.end_reason})` : ""}`;
  return h("li", { class: "live-session", dataset: { session: s.id } },
    h("strong", {}, s.who || "An investigator"), ` opened a live view ${when(s.started_at)}: “${s.reason}”. `,
    `Hard end ${when(s.ends_at)}${s.renewals ? `, renewed ${s.renewals}×` : ""}; ${state}.`,
    s.emergency_id ? " (during a declared emergency)" : "");
}

function deviceCard(device, reload) {
  const pause = h("input", { type: "checkbox", id: `pause-${device.id}`, checked: device.live_paused });
  pause.addEventListener("change", () => busy(pause, async () => {
    await api("PATCH", `/api/v1/edge/devices/${encodeURIComponent(device.id)}`, { body: { live_paused: pause.checked } });
    notice(statusBox, pause.checked ? `Live access through ${device.label} is paused.` : `Live access through ${device.label} is on again.`);
    await reload();
  }, alertBox));
  const unpair = h("button", { type: "button", class: "danger small" }, "Unpair");
  unpair.addEventListener("click", async () => {
    const ok = await confirmDialog({ title: `Unpair ${device.label}?`, text: "Its key stops working at once and any open live view closes. You can pair it again with a new code.", confirm: "Unpair" });
    if (ok) await busy(unpair, async () => { await del(`/api/v1/edge/devices/${encodeURIComponent(device.id)}`); await reload(); }, alertBox);
  });
  const cameras = device.cameras.length
    ? h("ul", {}, device.cameras.map((c) => h("li", {}, h("code", {}, c.camera_ref), " ",
      c.camera_id ? `${c.camera_label}: ${LIVE[c.live] || c.live}` : "not linked to a camera yet (register it with connection kind edge)")))
    : h("p", { class: "muted" }, "The relay has not offered any camera yet.");
  const sessions = device.live_sessions.length
    ? h("ul", { class: "live-sessions" }, device.live_sessions.map(sessionRow))
    : h("p", { class: "muted" }, "No live view has ever been opened through this relay.");
  return h("article", { class: "card", dataset: { device: device.id } },
    h("div", { class: "section-head" }, h("h3", {}, device.label),
      h("span", { class: device.connected ? "chip chip--on" : "chip chip--off" }, device.connected ? "connected" : "offline")),
    h("p", { class: "help" }, `Device ${device.id}, paired ${when(device.created_at)}${device.last_seen_at ? `, last seen ${when(device.last_seen_at)}` : ""}.`),
    h("label", { class: "check" }, pause, h("span", {}, "Pause all live access through this relay")),
    h("h4", {}, "Cameras"), cameras, h("h4", {}, "Live views"), sessions, unpair);
}

async function main() {
  const session = await requireRole(["owner"], { what: "the relay page" });
  if (!session) return;
  $("#core-url").textContent = location.origin;
  const list = $("#device-list");
  async function reload() {
    try {
      const { devices } = await get("/api/v1/edge/devices");
      show(list, devices.length ? devices.map((d) => deviceCard(d, reload)) : h("p", { class: "muted" }, "No relay is paired yet."));
    } catch (error) {
      showError(list, error, { context: "The relays could not be loaded" });
    }
  }
  $("#make-code").addEventListener("click", (event) => busy(event.currentTarget, async () => {
    const made = await post("/api/v1/edge/pairing-codes");
    show($("#pairing-code"), h("p", {}, "Pairing code: ", h("code", { class: "pairing-code" }, made.code), ` (works once, until ${when(made.expires_at)})`));
  }, alertBox));
  $("#refresh-devices").addEventListener("click", reload);
  await reload();
  $("#devices-app").dataset.ready = "true";
}

main().catch((error) => showError(alertBox, error));
