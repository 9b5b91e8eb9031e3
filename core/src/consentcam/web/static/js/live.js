// Investigator's live view: open a session (the server names the rule when the owner's policy refuses it), play the
// HLS playlist with hls.js (or natively), renew with a reason, end it. ?camera=ID fills the form.
import { ApiError, del, get, post } from "./api.js";
import { $, busy, errorBox, h, markFieldErrors, notice, requireRole, show, showError, when } from "./ui.js";

const alertBox = $("#page-alert");
const statusBox = $("#page-status");
const RULES = {
  live_never: "The owner never allows live view of this camera.",
  live_emergency_only: "The owner allows live view only during an emergency, and no active emergency of your agency covers this camera. A supervisor can declare one.",
  owner_paused: "The owner has paused all live access through this camera's relay.",
  no_grant: "The owner's permission for this camera was revoked or has expired.",
  no_edge_device: "This camera has no edge relay, so it cannot be viewed live.",
  edge_offline: "The camera's edge relay is offline right now.",
};
let hls = null;

function play(url) {
  const video = $("#live-video");
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({ enableWorker: false, liveSyncDurationCount: 2, xhrSetup: (xhr) => { xhr.withCredentials = true; } });
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) notice(statusBox, "The live view stopped: it ended, or the owner's permission no longer allows it.", "warn");
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
  } else {
    notice(statusBox, "This browser cannot play live video (HLS).", "warn");
  }
}

function stop() {
  if (hls) { hls.destroy(); hls = null; }
  const video = $("#live-video");
  video.removeAttribute("src");
  $("#live-player").hidden = true;
}

async function main() {
  const session = await requireRole(["investigator", "supervisor"], { what: "the live view" });
  if (!session) return;
  const form = $("#live-form");
  const params = new URLSearchParams(location.search);
  if (params.get("camera")) form.camera_id.value = params.get("camera");
  let current = null;

  function showSession(s) {
    current = s;
    $("#live-player").hidden = false;
    $("#live-until").textContent = `Ends by ${when(s.ends_at)} at the latest.`;
    play(new URL(s.playlist_url, location.origin).pathname);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = $("#live-errors");
    errors.replaceChildren();
    await busy(form.querySelector('button[type="submit"]'), async () => {
      try {
        showSession(await post("/api/v1/live-sessions", { camera_id: form.camera_id.value.trim(), reason: form.reason.value.trim() }));
      } catch (error) {
        markFieldErrors(form, error);
        const rule = error instanceof ApiError ? (error.rule || "") : "";
        show(errors, errorBox(error, { context: "Not opened" }), rule && RULES[rule] ? h("p", {}, RULES[rule]) : null);
      }
    });
  });
  $("#renew-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    const reason = event.currentTarget.reason.value.trim();
    await busy(event.currentTarget.querySelector("button[type=submit]"), async () => {
      const renewed = await post(`/api/v1/live-sessions/${encodeURIComponent(current.id)}/renew`, { reason });
      current = { ...current, ends_at: renewed.ends_at };
      $("#live-until").textContent = `Ends by ${when(renewed.ends_at)} at the latest.`;
    }, alertBox);
  });
  $("#live-end").addEventListener("click", (event) => busy(event.currentTarget, async () => {
    if (current) await del(`/api/v1/live-sessions/${encodeURIComponent(current.id)}`);
    stop();
    current = null;
    notice(statusBox, "The live view is closed.");
  }, alertBox));
  if (params.get("session")) {
    try {
      const s = await get(`/api/v1/live-sessions/${encodeURIComponent(params.get("session"))}`);
      if (s.active) showSession(s);
    } catch (error) { showError(alertBox, error); }
  }
  $("#live-app").dataset.ready = "true";
}

main().catch((error) => showError(alertBox, error));
