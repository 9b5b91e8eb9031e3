// Owner portal: cameras on a map, permissions in plain language, revoke with one button, requests with upload
// and decline, receipts, and each camera's access log.
import { ApiError, del, get, post, put } from "./api.js";
import { addJurisdictions, bearingTo, cameraDot, COLOURS, coneLayer, distanceM, makeMap } from "./map.js";
import { grantChips, localAgency, permissionsFieldset, readGrant } from "./permissions.js";
import { receiptView, tokenOf, uploader } from "./upload.js";
import {
  $, badge, busy, clearFieldErrors, config, confirmDialog, errorBox, h, markFieldErrors, notice, requireRole, show, showError, timeOnly, when,
} from "./ui.js";

const L = window.L;
const state = { cameras: [], inbox: [], jurisdictions: [], open: { edit: new Set(), log: new Set() } };
const alertBox = $("#page-alert");
const statusBox = $("#page-status");

const ACTIONS = {
  "camera.registered": () => "registered the camera",
  "camera.updated": () => "changed the camera's details",
  "camera.removed": () => "removed the camera",
  "grant.changed": (d) => `changed the permissions${d.version ? ` (version ${d.version})` : ""}`,
  "grant.revoked": () => "revoked everything",
  "map.read": (d) => (d.precise_location_revealed ? "viewed the precise location" : "saw the camera on the map as a block-sized area"),
  "request.opened": (d) => `asked for footage${d.case_number ? ` (case ${d.case_number})` : ""}`,
  "request.closed": (d) => `closed the request${d.case_number ? ` (case ${d.case_number})` : ""}`,
  "item.declined": () => "declined the request",
  "items.cancelled": (d) => `cancelled open requests${d.reason ? `: ${d.reason}` : ""}`,
  "items.expired": () => "the upload link expired",
  "notify.request": () => "sent you a message about a request",
  "fetch.direct": () => "fetched the requested clip from the camera",
  "live.opened": (d) => `opened a live view${d.reason ? `: ${d.reason}` : ""}`,
  "live.refused": () => "asked for a live view, which your permissions refused",
  "live.renewed": (d) => `renewed a live view${d.reason ? `: ${d.reason}` : ""}`,
  "live.closed": (d) => `live view closed${d.reason ? ` (${d.reason})` : ""}`,
  "edge.updated": () => "changed your edge relay's settings",
  "edge.unpaired": () => "unpaired your edge relay",
  "custody.received": () => "received your clip",
  "custody.verified": () => "checked your clip's SHA-256",
  "custody.viewed": () => "viewed your clip's details",
  "custody.downloaded": () => "played or downloaded your clip",
  "custody.exported": () => "exported your clip in a case package",
  "custody.held": () => "placed your clip on legal hold",
  "custody.released": () => "lifted the legal hold on your clip",
  "custody.disposed": () => "deleted your clip (its retention ended)",
  "evidence.stored": () => "stored your clip",
  "evidence.searched": () => "listed the clips of a case, including yours",
  "export.ready": () => "built a case package including your clip",
  "export.downloaded": () => "downloaded a case package including your clip",
};

export function describeEvent(event) {
  const words = ACTIONS[event.action];
  return words ? words(event.detail || {}) : event.action.replaceAll(".", " ").replaceAll("_", " ");
}

async function main() {
  const session = await requireRole(["owner"], { what: "the owner portal" });
  if (!session) return;
  const settings = config();
  const map = makeMap($("#owner-map"), { note: $("#map-note") });
  const cameraLayer = L.layerGroup().addTo(map);
  const draftLayer = L.layerGroup().addTo(map);
  try {
    const outlines = await addJurisdictions(map);
    state.jurisdictions = outlines.features;
    if (outlines.bounds) map.fitBounds(outlines.bounds, { animate: false, padding: [20, 20] });
  } catch (error) {
    showError(alertBox, error, { context: "The map outlines could not be loaded" });
  }
  $("#map-note").textContent = settings.geocoder
    ? "Click the map or search an address to place a camera."
    : "Click the map where your camera is. (Address search needs a geocoding plugin; none is installed here.)";

  // --- the add-camera form --------------------------------------------------------------------------
  const form = $("#camera-form");
  const lat = $("#cam-lat");
  const lon = $("#cam-lon");
  const sliders = { bearing_deg: $("#cam-bearing"), fov_deg: $("#cam-fov"), range_m: $("#cam-range") };
  const hasView = $("#cam-has-view");
  const where = () => ({ lat: Number.parseFloat(lat.value), lon: Number.parseFloat(lon.value) });
  let newPermissions = permissionsFieldset(null, state.jurisdictions, where);
  $("#new-permissions").replaceChildren(newPermissions);
  if (settings.geocoder) $("#geocode-field").hidden = false;

  const view = () => (hasView.checked ? {
    bearing_deg: Number(sliders.bearing_deg.value), fov_deg: Number(sliders.fov_deg.value), range_m: Number(sliders.range_m.value),
  } : null);
  function drawDraft() {
    $("#cam-bearing-out").textContent = `${sliders.bearing_deg.value}°`;
    $("#cam-fov-out").textContent = `${sliders.fov_deg.value}°`;
    $("#cam-range-out").textContent = `${sliders.range_m.value} m`;
    $("#view-sliders").hidden = !hasView.checked;
    draftLayer.clearLayers();
    const at = where();
    if (!Number.isFinite(at.lat) || !Number.isFinite(at.lon)) return;
    const cone = coneLayer(at.lat, at.lon, view(), COLOURS.fence);
    if (cone) cone.addTo(draftLayer);
    cameraDot(at.lat, at.lon, { colour: COLOURS.fence, id: "draft", label: "New camera" }).addTo(draftLayer);
    newPermissions.refresh();
  }
  for (const input of [lat, lon, hasView, ...Object.values(sliders)]) input.addEventListener("input", drawDraft);
  map.on("click", (event) => {
    $("#add-camera").open = true;
    const mode = form.querySelector('input[name="click_mode"]:checked').value;
    const at = where();
    if (mode === "aim" && Number.isFinite(at.lat) && Number.isFinite(at.lon)) {
      hasView.checked = true;
      sliders.bearing_deg.value = String(Math.round(bearingTo(at.lat, at.lon, event.latlng.lat, event.latlng.lng)) % 360);
      sliders.range_m.value = String(Math.max(5, Math.min(200, Math.round(distanceM(at.lat, at.lon, event.latlng.lat, event.latlng.lng) / 5) * 5)));
    } else {
      lat.value = event.latlng.lat.toFixed(6);
      lon.value = event.latlng.lng.toFixed(6);
      form.querySelector('input[name="click_mode"][value="aim"]').checked = true;
      $("#map-note").textContent = "Camera placed. Click again to set where it points, or adjust the sliders.";
    }
    drawDraft();
  });
  form.querySelector('input[name="click_mode"][value="place"]').addEventListener("change", () => { $("#map-note").textContent = "The next map click places the camera."; });
  $("#cam-geocode").addEventListener("click", () => busy($("#cam-geocode"), async () => {
    const q = $("#cam-address").value.trim();
    if (!q) return;
    const found = await get(`/api/v1/geocode?q=${encodeURIComponent(q)}`);
    const first = found.results && found.results[0];
    if (!first) { notice(statusBox, "No place found for that address; click the map instead.", "warn"); return; }
    lat.value = Number(first.lat).toFixed(6);
    lon.value = Number(first.lon).toFixed(6);
    map.setView([first.lat, first.lon], 18, { animate: false });
    drawDraft();
  }, alertBox));
  drawDraft();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const errors = $("#camera-errors");
    errors.replaceChildren();
    const at = where();
    const body = {
      label: form.label.value.trim(),
      location: { lat: at.lat, lon: at.lon },
      retention_days: Number.parseInt(form.retention_days.value, 10),
      precision: form.querySelector('input[name="precision"]:checked').value,
    };
    if (view()) body.view = view();
    const missing = [];
    if (!Number.isFinite(at.lat) || !Number.isFinite(at.lon)) missing.push({ loc: ["body", "lat"], msg: "Click the map where the camera is, or type its latitude and longitude" });
    if (!body.label) missing.push({ loc: ["body", "label"], msg: "Give the camera a name" });
    const submit = form.querySelector('button[type="submit"]');
    await busy(submit, async () => {
      let grant;
      try {
        grant = readGrant(newPermissions);
        if (missing.length) throw new ApiError(422, { title: "Some details are missing", detail: "", errors: missing });
      } catch (error) {
        markFieldErrors(form, error);
        show(errors, errorBox(error));
        return;
      }
      let camera;
      try {
        camera = await post("/api/v1/cameras", body);
      } catch (error) {
        markFieldErrors(form, error);
        show(errors, errorBox(error, { context: "The camera was not added" }));
        return;
      }
      try {
        await put(`/api/v1/cameras/${camera.id}/grants`, grant);
      } catch (error) {
        show(errors, errorBox(error, { context: `${camera.label} was added, but its permissions were not saved` }));
      }
      form.reset();
      const fresh = permissionsFieldset(null, state.jurisdictions, where);
      newPermissions.replaceWith(fresh);
      newPermissions = fresh;
      drawDraft();
      await load();
      notice(statusBox, `${camera.label} was added. ${summary(state.cameras.find((c) => c.id === camera.id))}`);
    });
  });

  // --- cameras, inbox, map ----------------------------------------------------------------------------
  async function load() {
    try {
      const [cameras, inbox] = await Promise.all([get("/api/v1/cameras"), get("/api/v1/inbox")]);
      state.cameras = cameras;
      state.inbox = inbox.items;
      alertBox.replaceChildren();
    } catch (error) {
      showError(alertBox, error, { context: "Your cameras could not be loaded" });
      return;
    }
    renderCameras();
    renderInbox();
    cameraLayer.clearLayers();
    for (const c of state.cameras) {
      const shared = c.grant && c.grant.in_force && (c.grant.map || c.grant.requests || c.grant.live !== "never");
      const colour = shared ? COLOURS.mine : "#6b7280";
      const cone = coneLayer(c.location.lat, c.location.lon, c.view, colour);
      if (cone) cone.addTo(cameraLayer);
      cameraDot(c.location.lat, c.location.lon, { colour, id: c.id, label: c.label }).addTo(cameraLayer);
    }
    if (!load.done) {
      load.done = true;
      if (!state.cameras.length) $("#add-camera").open = true;
    }
    if (state.cameras.length && !load.fitted) {
      load.fitted = true;
      const bounds = L.latLngBounds(state.cameras.map((c) => [c.location.lat, c.location.lon]));
      map.fitBounds(bounds.pad(0.5), { animate: false, maxZoom: 16 });
    }
  }

  function summary(camera) {
    if (!camera || !camera.grant.in_force) return "It shares nothing: police cannot see it or ask for its footage.";
    const g = camera.grant;
    const parts = [];
    if (g.map) parts.push("it is on the police map");
    if (g.requests) parts.push("the police may ask you for footage");
    if (g.live !== "never") parts.push(g.live === "always" ? "live view is allowed" : "live view only in emergencies");
    return parts.length ? `Now ${parts.join(", ")}.` : "It shares nothing yet: choose permissions under Your cameras.";
  }

  function renderCameras() {
    const list = $("#camera-list");
    $("#revoke-all").hidden = !state.cameras.some((c) => c.grant.in_force);
    if (!state.cameras.length) {
      show(list, h("p", { class: "muted" }, "No cameras yet. Click the map where your camera is to add it."));
      return;
    }
    show(list, state.cameras.map(cameraCard));
  }

  function cameraCard(camera) {
    const g = camera.grant;
    const sharing = g.in_force && (g.map || g.requests || g.direct_fetch || g.live !== "never");
    const local = localAgency(state.jurisdictions, camera.location.lat, camera.location.lon);
    const card = h("article", { class: `camera ${sharing ? "sharing" : "revoked"}`, "aria-labelledby": `cam-${camera.id}-title`, dataset: { cameraId: camera.id } },
      h("h3", { id: `cam-${camera.id}-title` }, camera.label),
      h("ul", { class: "facts" },
        h("li", {}, camera.precision === "exact" ? "Police see the exact spot" : "Police see only a block-sized area"),
        h("li", {}, `Keeps ${camera.retention_days} days`),
        h("li", {}, local ? local.name : "No agency covers this spot")),
      h("ul", { class: "chips", "aria-label": "Shared now" }, grantChips(g)),
      h("p", { class: "effect" }, sharing ? summary(camera) : "Nothing shared: police cannot see this camera or ask for its footage."));
    const editArea = h("div", { class: "edit-area" });
    const logArea = h("div", { class: "access-log" });
    const editButton = h("button", { type: "button", class: "secondary small", "aria-expanded": String(state.open.edit.has(camera.id)) }, "Change permissions");
    const logButton = h("button", { type: "button", class: "secondary small", "aria-expanded": String(state.open.log.has(camera.id)) }, "Access log");
    const revokeButton = h("button", { type: "button", class: "danger small", disabled: !g.in_force }, "Revoke everything");
    card.append(h("div", { class: "actions" }, editButton, logButton, revokeButton), editArea, logArea);

    const openEdit = () => {
      const fieldset = permissionsFieldset(g, state.jurisdictions, () => camera.location);
      const errors = h("div", { class: "form-errors" });
      const save = h("button", { type: "submit" }, "Save permissions");
      const editForm = h("form", { class: "form", novalidate: true }, fieldset, errors, save);
      editForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        await busy(save, async () => {
          try {
            const saved = await put(`/api/v1/cameras/${camera.id}/grants`, readGrant(fieldset));
            state.open.edit.delete(camera.id);
            await load();
            notice(statusBox, `Saved permissions for ${camera.label} (version ${saved.version}).`);
          } catch (error) {
            markFieldErrors(editForm, error);
            show(errors, errorBox(error, { context: "Not saved" }));
          }
        });
      });
      show(editArea, editForm);
    };
    const openLog = async () => {
      show(logArea, h("p", { class: "muted" }, "Loading the access log…"));
      try {
        const log = await get(`/api/v1/cameras/${camera.id}/access-log`);
        show(logArea, accessLogTable(camera, log.events));
      } catch (error) {
        show(logArea, errorBox(error, { context: "The access log could not be loaded" }));
      }
    };
    editButton.addEventListener("click", () => {
      const open = !state.open.edit.has(camera.id);
      if (open) { state.open.edit.add(camera.id); openEdit(); } else { state.open.edit.delete(camera.id); editArea.replaceChildren(); }
      editButton.setAttribute("aria-expanded", String(open));
    });
    logButton.addEventListener("click", () => {
      const open = !state.open.log.has(camera.id);
      if (open) { state.open.log.add(camera.id); openLog(); } else { state.open.log.delete(camera.id); logArea.replaceChildren(); }
      logButton.setAttribute("aria-expanded", String(open));
    });
    revokeButton.addEventListener("click", () => revoke([camera], revokeButton));
    if (state.open.edit.has(camera.id)) openEdit();
    if (state.open.log.has(camera.id)) openLog();
    return card;
  }

  function accessLogTable(camera, events) {
    if (!events.length) return h("p", { class: "muted" }, "Nobody has accessed this camera yet.");
    return h("div", { class: "table-wrap" }, h("table", {},
      h("caption", {}, `Every access to ${camera.label}, newest first`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Who"), h("th", { scope: "col" }, "What"))),
      h("tbody", {}, events.map((e) => h("tr", { dataset: { action: e.action } },
        h("td", { class: "nowrap" }, h("time", { datetime: e.at }, when(e.at).slice(0, 10)), h("br"), timeOnly(e.at)),
        h("td", {}, e.actor),
        h("td", {}, describeEvent(e)))))));
  }

  async function revoke(cameras, button) {
    const targets = cameras.filter((c) => c.grant.in_force);
    if (!targets.length) return;
    const openBefore = state.inbox.filter((i) => i.status === "notified" && targets.some((c) => c.id === i.camera_id)).length;
    const ok = await confirmDialog({
      title: targets.length === 1 ? `Revoke everything for ${targets[0].label}?` : `Revoke everything on all ${targets.length} cameras?`,
      text: "The police lose the map dot at once, open requests are cancelled and their upload links stop working, and no live view can open. Clips you already delivered stay with their case.",
      confirm: "Revoke everything", cancel: "Keep my permissions",
    });
    if (!ok) return;
    await busy(button, async () => {
      for (const c of targets) await del(`/api/v1/cameras/${c.id}/grants`);
      await load();
      const cancelled = openBefore - state.inbox.filter((i) => i.status === "notified" && targets.some((c) => c.id === i.camera_id)).length;
      notice(statusBox, `Revoked. ${targets.length === 1 ? targets[0].label : `${targets.length} cameras`}: police can no longer see ${targets.length === 1 ? "it" : "them"} on their map or ask for footage.`
        + (cancelled > 0 ? ` ${cancelled} open request${cancelled === 1 ? " was" : "s were"} cancelled and ${cancelled === 1 ? "its link no longer works" : "their links no longer work"}.` : ""));
      statusBox.scrollIntoView({ block: "nearest" });
    }, alertBox);
  }
  $("#revoke-all").addEventListener("click", (e) => revoke(state.cameras, e.currentTarget));

  function renderInbox() {
    const box = $("#inbox");
    if (!state.inbox.length) {
      show(box, h("p", { class: "muted" }, "No requests for footage. If the police ask about a place and time your camera covers, it appears here and you get a message."));
      return;
    }
    show(box, state.inbox.map(inboxItem));
  }

  function inboxItem(item) {
    const token = tokenOf(item.upload_url);
    const parts = [
      h("header", {},
        h("h3", { id: `item-${item.id}-title` }, `Case ${item.case_number} · ${item.agency}`),
        badge(item.status)),
      h("p", {}, item.description),
      h("ul", { class: "facts" },
        h("li", {}, `Camera: ${item.camera_label}`),
        h("li", {}, `Time asked about: ${when(item.window.start)} to ${timeOnly(item.window.end)}`),
        item.status === "notified" ? h("li", {}, `Answer by ${when(item.link_expires_at)}`) : null),
    ];
    if (item.status_reason && item.status !== "notified") parts.push(h("p", { class: "muted" }, `Why: ${item.status_reason}`));
    for (const r of item.receipts || []) parts.push(receiptView(r));
    if (token && (item.status === "notified" || item.status === "uploaded")) {
      const widget = uploader(token, {
        label: item.status === "uploaded" ? "Add another clip for this request" : "Upload the clip",
        onDone: () => {
          const article = widget.closest(".request-item");
          if (article) {
            article.dataset.status = "uploaded";
            article.querySelector(".badge").replaceWith(badge("uploaded"));
            const decline = article.querySelector(".decline-form");
            if (decline) decline.remove();
          }
        },
      });
      parts.push(widget);
      parts.push(h("p", { class: "help" }, "Private link for this request (works without signing in): ", h("a", { href: `/u/${encodeURIComponent(token)}` }, "open the upload page")));
    }
    if (item.status === "notified") {
      const reason = h("input", { id: `decline-${item.id}`, name: "reason", maxlength: "500", placeholder: "optional" });
      const declineButton = h("button", { type: "submit", class: "secondary" }, "Decline");
      const errors = h("div", { class: "form-errors" });
      const declineForm = h("form", { class: "decline-form inline", novalidate: true },
        h("div", {}, h("label", { for: reason.id }, "Reason for declining (optional)"), reason), declineButton, errors);
      declineForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        await busy(declineButton, async () => {
          try {
            await post(`/api/v1/items/${item.id}/decline`, reason.value.trim() ? { reason: reason.value.trim() } : {});
            await load();
            notice(statusBox, `You declined case ${item.case_number}. Nothing was shared.`);
          } catch (error) {
            show(errors, errorBox(error, { context: "Not declined" }));
          }
        });
      });
      parts.push(declineForm);
    }
    return h("article", { class: "request-item", "aria-labelledby": `item-${item.id}-title`, dataset: { itemId: item.id, status: item.status } }, parts);
  }

  await load();
  $("#owner-app").dataset.ready = "true";
  setInterval(() => {
    const uploading = Array.from(document.querySelectorAll(".uploader progress")).some((p) => p.value < 100);
    if (!uploading && !document.hidden) refreshInbox();
  }, 20000);
  async function refreshInbox() {
    try {
      const inbox = await get("/api/v1/inbox");
      if (JSON.stringify(inbox.items) !== JSON.stringify(state.inbox)) { state.inbox = inbox.items; renderInbox(); }
    } catch { /* the next full load shows errors */ }
  }
}

main().catch((error) => showError(alertBox, error));
