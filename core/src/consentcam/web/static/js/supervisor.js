// Supervisor: the approval queue, emergency declaration, and the state of the kill switch for the agency.
import { ApiError, del, get, post, supports } from "./api.js";
import { addJurisdictions, areaLayer, areaOf, COLOURS, describeArea, enableFenceDrawing, makeMap } from "./map.js";
import { $, badge, busy, errorBox, h, markFieldErrors, notice, requireRole, show, showError, timeOnly, when } from "./ui.js";

const L = window.L;
const alertBox = $("#page-alert");
const statusBox = $("#page-status");

const NOT_YET = (what) => h("div", { class: "alert alert--info" }, h("p", { class: "alert__title" }, `${what} is not available on this server yet.`),
  h("p", {}, "This server's version does not offer it; the page will use it as soon as the server does."));

async function main() {
  const session = await requireRole(["supervisor"], { what: "the supervisor page" });
  if (!session) return;
  const agencyId = session.user.agency_id;

  // --- kill switch ------------------------------------------------------------------------------------
  let agency = null;
  const kill = $("#kill-switch");
  try {
    agency = await get(`/api/v1/agencies/${encodeURIComponent(agencyId)}`);
    show(kill, h("div", { class: `alert ${agency.suspended ? "alert--error" : "alert--ok"}` },
      h("p", { class: "state" }, agency.suspended ? `${agency.name}: access suspended by the city` : `${agency.name}: access active`),
      h("p", {}, agency.suspended
        ? "While the kill switch is on, nobody in the agency can see the map, make requests or read evidence."
        : "The city's kill switch is off: your agency's staff can use ConsentCam within your policy limits."),
      h("p", { class: "help" }, `Limits: fences up to ${agency.max_area_km2} km², windows up to ${agency.max_window_hours} h, ${agency.require_approval ? "every request needs a supervisor's approval" : "requests open without approval"}.`)));
  } catch (error) {
    if (error instanceof ApiError && error.suspended) {
      show(kill, h("div", { class: "alert alert--error" }, h("p", { class: "state" }, "Access suspended by the city (kill switch on)"), h("p", {}, error.detail)));
      for (const id of ["#approval-queue", "#emergency-form"]) $(id).hidden = true;
      return;
    }
    show(kill, errorBox(error));
  }

  // --- approval queue -----------------------------------------------------------------------------------
  const queueMaps = [];
  async function loadQueue() {
    const box = $("#approval-queue");
    for (const m of queueMaps.splice(0)) m.remove();
    try {
      const { requests } = await get("/api/v1/requests?status=pending_approval&limit=100");
      if (!requests.length) { show(box, h("p", { class: "muted" }, "Nothing waits for your approval.")); return; }
      show(box, h("div", { class: "inbox" }, requests.map(queueItem)));
      for (const r of requests) {
        const el = document.getElementById(`queue-map-${r.id}`);
        const m = makeMap(el);
        queueMaps.push(m);
        const outline = agency ? L.geoJSON(agency.jurisdiction, { style: { color: COLOURS.jurisdiction, weight: 1.5, dashArray: "6 5", fill: false } }).addTo(m) : null;
        const layer = areaLayer(r.area, COLOURS.fence);
        if (layer) { layer.addTo(m); m.fitBounds(layer.getBounds(), { animate: false, maxZoom: 16, padding: [40, 40] }); } else if (outline) m.fitBounds(outline.getBounds(), { animate: false });
      }
    } catch (error) {
      show(box, errorBox(error, { context: "The queue could not be loaded" }));
    }
  }

  function queueItem(r) {
    const approve = h("button", { type: "button", dataset: { approve: r.id } }, "Approve and ask the owners");
    const result = h("div", { class: "status", role: "status" });
    approve.addEventListener("click", () => busy(approve, async () => {
      try {
        const done = await post(`/api/v1/requests/${encodeURIComponent(r.id)}/approve`);
        notice(statusBox, `Approved case ${r.case_number}: the request is ${done.status}; the owners of matching cameras are being asked now.`);
        await loadQueue();
      } catch (error) {
        show(result, errorBox(error, { context: "Not approved" }));
      }
    }));
    return h("article", { class: "request-item", dataset: { requestId: r.id } },
      h("header", {}, h("h3", {}, `Case ${r.case_number}`), badge(r.status)),
      h("div", { class: "split" },
        h("div", {},
          h("p", {}, r.description),
          h("ul", { class: "facts" },
            h("li", {}, `Time window: ${when(r.window.start)} to ${timeOnly(r.window.end)}`),
            h("li", {}, `Asked ${when(r.created_at)}`),
            h("li", {}, `${r.matched} camera${r.matched === 1 ? "" : "s"} match now`)),
          h("p", { class: "help" }, "Consent is read again when you approve: owners who revoked since are not asked."),
          h("div", { class: "actions" }, approve), result),
        h("div", { id: `queue-map-${r.id}`, class: "map", role: "img", "aria-label": `The fence of case ${r.case_number}` })));
  }
  $("#refresh-queue").addEventListener("click", loadQueue);

  // --- emergencies --------------------------------------------------------------------------------------
  const map = makeMap($("#emergency-map"));
  if (agency) {
    const outline = L.geoJSON(agency.jurisdiction, { style: { color: COLOURS.jurisdiction, weight: 2, dashArray: "6 5", fillOpacity: 0.03 } }).addTo(map);
    map.fitBounds(outline.getBounds(), { animate: false });
  } else {
    try { const j = await addJurisdictions(map); if (j.bounds) map.fitBounds(j.bounds, { animate: false }); } catch { /* plain map */ }
  }
  const canDeclare = await supports("POST", "/api/v1/emergencies");
  let area = null;
  if (!canDeclare) {
    show($("#emergency-unavailable"), NOT_YET("Declaring an emergency"));
    for (const el of $("#emergency-form").elements) el.disabled = true;
  } else {
    enableFenceDrawing(map, (layer) => { area = areaOf(layer); $("#emergency-area").textContent = describeArea(area); });
  }
  const form = $("#emergency-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = $("#emergency-errors");
    errors.replaceChildren();
    const body = { area, minutes: Number.parseInt(form.minutes.value, 10), reason: form.reason.value.trim() };
    if (!area || !body.reason) {
      show(errors, errorBox(new ApiError(422, { title: "The declaration is not complete", detail: "",
        errors: [!area && { loc: ["body", "area"], msg: "Draw the emergency's area on the map" }, !body.reason && { loc: ["body", "reason"], msg: "Give the reason" }].filter(Boolean) })));
      return;
    }
    await busy(form.querySelector('button[type="submit"]'), async () => {
      try {
        const created = await post("/api/v1/emergencies", body);
        notice(statusBox, `Emergency declared until ${when(created.ends_at)}.`, "warn");
        form.reason.value = "";
        await loadEmergencies();
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) { show(errors, NOT_YET("Declaring an emergency")); return; }
        markFieldErrors(form, error);
        show(errors, errorBox(error, { context: "Not declared" }));
      }
    });
  });

  const emergencyLayer = L.layerGroup().addTo(map);
  async function loadEmergencies() {
    const box = $("#emergency-list");
    if (!(await supports("GET", "/api/v1/emergencies"))) {
      show(box, canDeclare ? h("p", { class: "help" }, "This server cannot list emergencies yet; each one ends by itself at its time limit.") : null);
      return;
    }
    try {
      const result = await get("/api/v1/emergencies");
      const list = Array.isArray(result) ? result : result.emergencies || result.items || [];
      emergencyLayer.clearLayers();
      if (!list.length) { show(box, h("p", { class: "muted" }, "No emergency is active.")); return; }
      show(box, h("h3", {}, "Active emergencies"), h("ul", {}, list.map((e) => {
        const layer = areaLayer(e.area, COLOURS.block);
        if (layer) layer.addTo(emergencyLayer);
        const end = h("button", { type: "button", class: "secondary small" }, "End now");
        end.addEventListener("click", () => busy(end, async () => { await del(`/api/v1/emergencies/${encodeURIComponent(e.id)}`); await loadEmergencies(); }, box));
        return h("li", {}, `${e.reason || "Emergency"}, until ${when(e.ends_at)} `, end);
      })));
    } catch (error) {
      show(box, errorBox(error, { context: "The emergencies could not be loaded" }));
    }
  }

  await Promise.all([loadQueue(), loadEmergencies()]);
  $("#supervisor-app").dataset.ready = "true";
}

main().catch((error) => showError(alertBox, error));
