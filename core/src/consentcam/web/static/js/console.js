// Investigator console: the agency's camera map, a fence and a time window with the live count of cameras that
// would be asked, sending the request, tracking its items, and the evidence: view, download, filter, export.
import { ApiError, api, get, post, supports } from "./api.js";
import {
  addJurisdictions, areaLayer, areaOf, cameraArea, cameraDot, COLOURS, coneLayer, describeArea, enableFenceDrawing, makeMap,
} from "./map.js";
import {
  $, badge, busy, bytes, clearFieldErrors, errorBox, fromLocalInput, h, markFieldErrors, notice, requireRole, show, showError,
  timeOnly, toLocalInput, when,
} from "./ui.js";

const L = window.L;
const alertBox = $("#page-alert");
const statusBox = $("#page-status");
const state = { session: null, agency: null, features: new Map(), fence: null, previewSeq: 0, requestId: null, label: "" };

async function main() {
  const session = await requireRole(["investigator", "supervisor", "auditor", "admin"], { what: "the investigator console" });
  if (!session) return;
  state.session = session;
  const canAsk = ["investigator", "supervisor"].includes(session.user.role);
  const map = makeMap($("#console-map"), { note: $("#map-note") });
  const cameraLayer = L.layerGroup().addTo(map);
  try {
    state.agency = await get(`/api/v1/agencies/${encodeURIComponent(session.user.agency_id)}`);
    $("#window-limit").textContent = String(state.agency.max_window_hours);
    const outline = L.geoJSON(state.agency.jurisdiction, {
      style: { color: COLOURS.jurisdiction, weight: 2, dashArray: "6 5", fill: true, fillOpacity: 0.03, className: `jurisdiction jurisdiction-${state.agency.id}` },
      interactive: false,
    }).addTo(map);
    map.fitBounds(outline.getBounds(), { animate: false, padding: [10, 10] });
  } catch (error) {
    showError(alertBox, error);
    if (error instanceof ApiError && error.suspended) { $("#console-app").hidden = true; return; }
    try { const j = await addJurisdictions(map); if (j.bounds) map.fitBounds(j.bounds, { animate: false }); } catch { /* the map still works */ }
  }

  // --- cameras on the map -------------------------------------------------------------------------------
  async function loadCameras() {
    try {
      const collection = await get("/api/v1/map/cameras");
      cameraLayer.clearLayers();
      state.features = new Map(collection.features.map((f) => [f.id, f]));
      let exact = 0;
      for (const f of collection.features) {
        const [lon, lat] = f.geometry.coordinates;
        const p = f.properties;
        const tip = `${p.label}${p.requests ? "" : " (not open to requests)"}${p.live !== "never" ? `; live: ${p.live.replace("_", " ")}` : ""}`;
        if (p.precision === "exact") {
          exact += 1;
          const cone = p.view ? coneLayer(lat, lon, p.view, COLOURS.exact) : null;
          if (cone) cone.addTo(cameraLayer);
          cameraDot(lat, lon, { colour: COLOURS.exact, id: p.id, label: tip }).addTo(cameraLayer);
        } else {
          cameraArea(lat, lon, (p.accuracy_m || 111) * 0.71, { id: p.id, label: `${tip} (block-level: somewhere in this area)` }).addTo(cameraLayer);
        }
      }
      const n = collection.features.length;
      $("#map-note").textContent = n
        ? `${n} camera${n === 1 ? "" : "s"} on your agency's map: ${exact} at their exact spot, ${n - exact} shown as block-sized areas. Only owners who chose to be on your map appear.`
        : "No camera on your agency's map: no owner in your jurisdiction has chosen to appear on it.";
      $("#console-map").dataset.cameras = String(n);
    } catch (error) {
      showError(alertBox, error, { context: "The camera map could not be loaded" });
    }
  }

  // --- the request form -------------------------------------------------------------------------------
  const form = $("#request-form");
  const start = $("#window-start");
  const end = $("#window-end");
  const now = new Date();
  now.setSeconds(0, 0);
  end.value = toLocalInput(now);
  start.value = toLocalInput(new Date(now.getTime() - 2 * 3600 * 1000));
  end.max = toLocalInput(now);

  if (!canAsk) {
    form.replaceChildren(h("p", { class: "muted" }, "Only investigators and supervisors make requests; you can see the map and your agency's requests."));
  } else {
    const drawing = enableFenceDrawing(map, (layer) => {
      state.fence = areaOf(layer);
      $("#fence-summary").textContent = describeArea(state.fence);
      schedulePreview();
    });
    $("#circle-apply").addEventListener("click", () => {
      const lat = Number.parseFloat($("#circle-lat").value);
      const lon = Number.parseFloat($("#circle-lon").value);
      const radius = Number.parseFloat($("#circle-radius").value);
      if (![lat, lon, radius].every(Number.isFinite) || radius <= 0) {
        show($("#request-errors"), errorBox(new ApiError(422, { title: "Check the circle", detail: "Latitude, longitude and a positive radius in metres are needed." })));
        return;
      }
      $("#request-errors").replaceChildren();
      drawing.setCircle(lat, lon, radius);
    });
    start.addEventListener("change", schedulePreview);
    end.addEventListener("change", schedulePreview);
    form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  }

  let timer = null;
  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  }

  function windowBody() {
    return { start: fromLocalInput(start.value), end: fromLocalInput(end.value) };
  }

  async function preview() {
    const box = $("#live-count");
    box.classList.remove("bad");
    if (!state.fence) {
      box.textContent = "Draw a fence to see how many cameras would be asked.";
      return;
    }
    const w = windowBody();
    if (!w.start || !w.end) { box.textContent = "Pick the time window."; return; }
    const seq = ++state.previewSeq;
    box.textContent = "Counting…";
    try {
      const result = await post("/api/v1/requests/preview", { area: state.fence, window: w });
      if (seq !== state.previewSeq) return;
      box.dataset.matched = String(result.matched);
      show(box,
        h("span", { class: "big" }, `${result.matched} camera${result.matched === 1 ? "" : "s"}`),
        `would be asked (${result.owners} owner${result.owners === 1 ? "" : "s"}), in ${result.area_km2.toFixed(3)} km². Consent is checked again when the request is approved.`);
    } catch (error) {
      if (seq !== state.previewSeq) return;
      box.classList.add("bad");
      delete box.dataset.matched;
      box.textContent = error instanceof ApiError ? (error.errors.length ? error.errors.map((e) => e.msg).join("; ") : error.detail || error.title) : "The count could not be computed.";
    }
  }

  async function send() {
    clearFieldErrors(form);
    const errors = $("#request-errors");
    errors.replaceChildren();
    const body = {
      case_number: form.case_number.value.trim(), description: form.description.value.trim(), area: state.fence, window: windowBody(),
    };
    const missing = [];
    if (!state.fence) missing.push({ loc: ["body", "area"], msg: "Draw a fence on the map first" });
    if (!body.window.start || !body.window.end) missing.push({ loc: ["body", "window"], msg: "Pick the start and end of the time window" });
    if (!body.case_number) missing.push({ loc: ["body", "case_number"], msg: "Enter the case number" });
    if (!body.description) missing.push({ loc: ["body", "description"], msg: "Say what happened: owners read this" });
    if (missing.length) {
      const error = new ApiError(422, { title: "The request is not complete", detail: "", errors: missing });
      markFieldErrors(form, error);
      show(errors, errorBox(error));
      return;
    }
    await busy($("#send-request"), async () => {
      try {
        const created = await post("/api/v1/requests", body);
        notice(statusBox, created.status === "pending_approval"
          ? `Request ${body.case_number} was sent to a supervisor for approval. ${created.matched} camera${created.matched === 1 ? "" : "s"} match now; owners are asked once it is approved.`
          : `Request ${body.case_number} is open: ${created.matched} camera owner${created.matched === 1 ? " is" : "s are"} being asked.`);
        form.case_number.value = "";
        form.description.value = "";
        await loadRequests();
        openRequest(created.id);
      } catch (error) {
        markFieldErrors(form, error, { "window.start": "start", "window.end": "end", window: "end" });
        show(errors, errorBox(error, { context: "The request was not sent" }));
      }
    });
  }

  // --- requests, items and evidence -------------------------------------------------------------------
  async function loadRequests() {
    const box = $("#request-list");
    try {
      const { requests } = await get("/api/v1/requests?limit=50");
      if (!requests.length) { show(box, h("p", { class: "muted" }, "Your agency has made no requests yet.")); return; }
      show(box, h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Case", "Created", "Time window", "Status", "Cameras", ""].map((t) => h("th", { scope: "col", class: t === "Cameras" ? "num" : null }, t)))),
        h("tbody", {}, requests.map((r) => h("tr", { class: "clickable-row", dataset: { requestId: r.id } },
          h("td", {}, r.case_number),
          h("td", {}, when(r.created_at)),
          h("td", {}, `${when(r.window.start)} to ${timeOnly(r.window.end)}`),
          h("td", {}, badge(r.status)),
          h("td", { class: "num" }, String(r.matched)),
          h("td", {}, h("button", { type: "button", class: "secondary small", onclick: () => openRequest(r.id), "aria-label": `Open case ${r.case_number}` }, "Open"))))))));
    } catch (error) {
      show(box, errorBox(error, { context: "The requests could not be loaded" }));
    }
  }
  $("#refresh-requests").addEventListener("click", () => { loadRequests(); if (state.requestId) openRequest(state.requestId); });

  let fenceShown = null;
  async function openRequest(id, { label = "" } = {}) {
    state.requestId = id;
    state.label = label;
    const section = $("#request-detail");
    const body = $("#detail-body");
    section.hidden = false;
    show(body, h("p", { class: "muted" }, "Loading…"));
    let request;
    try {
      request = await get(`/api/v1/requests/${encodeURIComponent(id)}`);
    } catch (error) {
      show(body, errorBox(error));
      return;
    }
    $("#detail-title").textContent = `Case ${request.case_number}`;
    if (fenceShown) map.removeLayer(fenceShown);
    fenceShown = areaLayer(request.area, COLOURS.fence);
    if (fenceShown) fenceShown.addTo(map);
    const items = request.items || [];
    const counts = items.reduce((acc, i) => ({ ...acc, [i.status]: (acc[i.status] || 0) + 1 }), {});
    const parts = [
      h("p", {}, request.description),
      h("ul", { class: "facts" },
        h("li", {}, badge(request.status)),
        h("li", {}, `Time window: ${when(request.window.start)} to ${when(request.window.end)}`),
        h("li", {}, `Created ${when(request.created_at)}`),
        request.approved_at ? h("li", {}, `Approved ${when(request.approved_at)}`) : null),
      h("h3", {}, "Cameras asked"),
      items.length
        ? h("p", {}, Object.entries(counts).map(([s, n]) => `${n} ${s === "notified" ? "waiting for the owner" : s}`).join(" · "))
        : h("p", { class: "muted" }, request.status === "pending_approval" ? "Nobody is asked until a supervisor approves." : "No camera matched."),
    ];
    if (items.length) {
      parts.push(h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Camera", "Status", "Clips"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, items.map((i) => {
          const f = state.features.get(i.camera_id);
          return h("tr", { dataset: { itemId: i.id, status: i.status } },
            h("td", {}, f ? f.properties.label : `Camera ${i.camera_id.slice(0, 8)}`),
            h("td", {}, badge(i.status), i.status_reason ? h("span", { class: "muted" }, ` ${i.status_reason}`) : null),
            h("td", {}, String(i.evidence_ids.length)));
        })))));
    }
    const actions = h("div", { class: "actions" });
    if (["investigator", "supervisor"].includes(state.session.user.role) && request.status !== "closed") {
      const close = h("button", { type: "button", class: "secondary" }, "Close request");
      close.addEventListener("click", () => busy(close, async () => {
        await post(`/api/v1/requests/${id}/close`);
        notice(statusBox, `Case ${request.case_number} is closed; open links no longer work.`);
        await loadRequests();
        await openRequest(id);
      }, statusBox));
      actions.append(close);
    }
    parts.push(actions, h("h3", {}, "Evidence"));
    const evidenceBox = h("div", { class: "evidence-list" });
    parts.push(evidenceBox);
    show(body, parts);
    await loadEvidence(request, evidenceBox);
    section.scrollIntoView({ block: "start" });
  }

  async function loadEvidence(request, box) {
    if (!(await supports("GET", "/api/v1/evidence"))) {
      show(box, h("div", { class: "alert alert--info" }, h("p", {}, "Evidence search is not available on this server yet.")));
      return;
    }
    const filterInput = h("input", { id: "label-filter", name: "label", value: state.label, placeholder: "e.g. pickup_truck", list: "label-options" });
    const filterForm = h("form", { class: "inline filter-form", role: "search" },
      h("div", {}, h("label", { for: "label-filter" }, "Filter by analysis label"), filterInput),
      h("button", { type: "submit", class: "secondary" }, "Filter"));
    filterForm.addEventListener("submit", (e) => { e.preventDefault(); openRequest(request.id, { label: filterInput.value.trim() }); });
    const canExport = ["investigator", "supervisor"].includes(state.session.user.role) && await supports("POST", `/api/v1/requests/{request_id}/export`);
    const exportArea = h("div", { class: "export-area" });
    if (canExport) {
      const button = h("button", { type: "button", id: "export-package" }, "Export package (zip)");
      button.addEventListener("click", () => busy(button, () => exportPackage(request, exportArea), exportArea));
      exportArea.append(h("div", { class: "actions" }, button, h("span", { class: "help" }, "Clips, a manifest with their SHA-256 and custody chain, signed; for your records system.")));
    }
    const listBox = h("div", {}, h("p", { class: "muted" }, "Loading clips…"));
    show(box, filterForm, listBox, exportArea);
    try {
      const params = new URLSearchParams({ request_id: request.id, limit: "100" });
      if (state.label) params.set("label", state.label);
      const page = await get(`/api/v1/evidence?${params}`);
      const items = page.items || [];
      const labels = new Set(items.flatMap((e) => (e.labels || []).map(labelName)).filter(Boolean));
      filterForm.append(h("datalist", { id: "label-options" }, Array.from(labels, (l) => h("option", { value: l }))));
      if (!items.length) {
        show(listBox, h("p", { class: "muted" }, state.label ? `No clip of this request has the label "${state.label}".` : "No clip received yet."));
        return;
      }
      show(listBox, items.map((e) => evidenceCard(request, e)));
    } catch (error) {
      show(listBox, errorBox(error, { context: "The clips could not be loaded" }));
    }
  }

  function evidenceCard(request, e) {
    const f = e.camera_id ? state.features.get(e.camera_id) : null;
    const media = e.media || {};
    const facts = [
      media.container || media.format, media.video_codec || media.codec, media.duration_s ? `${Number(media.duration_s).toFixed(1)} s` : null,
      media.width && media.height ? `${media.width}×${media.height}` : media.resolution, bytes(e.size),
    ].filter(Boolean);
    const content = `/api/v1/evidence/${encodeURIComponent(e.id)}/content`;
    const player = h("div", { class: "player" });
    const view = h("button", { type: "button", class: "secondary small" }, "View clip");
    view.addEventListener("click", () => {
      show(player, h("video", { controls: true, preload: "metadata", src: content, "aria-label": `Clip ${e.id}` }),
        h("p", { class: "help" }, "Viewing is recorded in the clip's custody chain and the owner's access log."));
      view.disabled = true;
    });
    const download = h("a", { class: "button secondary small", href: content, download: `${request.case_number}-${e.id}.${media.extension || "bin"}` }, "Download");
    return h("article", { class: "evidence", dataset: { evidenceId: e.id } },
      h("h4", {}, f ? f.properties.label : e.camera_id ? `Camera ${e.camera_id.slice(0, 8)}` : "Clip"),
      h("ul", { class: "facts" }, h("li", {}, `Received ${when(e.received_at)}`), facts.map((x) => h("li", {}, x)), e.on_hold ? h("li", {}, "On legal hold") : null),
      h("p", {}, "SHA-256 ", h("code", { class: "sha256" }, e.sha256)),
      (e.labels || []).length ? h("ul", { class: "label-list", "aria-label": "Analysis labels" }, e.labels.map((l) => h("li", { class: "chip chip--off" }, labelName(l)))) : null,
      h("div", { class: "actions" }, view, download),
      player);
  }

  async function exportPackage(request, area) {
    const response = await api("POST", `/api/v1/requests/${encodeURIComponent(request.id)}/export`, { raw: true, headers: { Accept: "application/zip, application/json" } });
    const type = response.headers.get("Content-Type") || "";
    const old = area.querySelector(".export-result");
    if (old) old.remove();
    if (type.includes("json")) {
      const info = await response.json();
      const href = info.url || info.download_url || info.href;
      area.append(h("div", { class: "alert alert--ok export-result" }, h("p", {}, "The package is ready. ", href ? h("a", { href, download: "" }, "Download it") : "")));
      return;
    }
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = disposition.match(/filename="?([^";]+)"?/);
    const name = match ? match[1] : `${request.case_number}-export.zip`;
    const href = URL.createObjectURL(blob);
    const link = h("a", { href, download: name, class: "export-link" }, `Save ${name} (${bytes(blob.size)})`);
    area.append(h("div", { class: "alert alert--ok export-result" }, h("p", {}, "The package is built and signed. ", link)));
    link.click();
  }

  await Promise.all([loadCameras(), loadRequests()]);
  $("#console-map").dataset.ready = "true";
}

function labelName(l) {
  if (!l) return "";
  if (typeof l === "string") return l;
  return l.label || l.name || "";
}

main().catch((error) => showError(alertBox, error));
