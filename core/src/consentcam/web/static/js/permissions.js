// The owner's permissions, each in plain language: what it means, and what it never allows.
import { ApiError } from "./api.js";
import { h } from "./ui.js";

let counter = 0;

export const PERMISSIONS = [
  {
    key: "map",
    title: "Show this camera on the police map",
    means: "Investigators of the police agency for this area see that a camera is here (the exact spot, or only a block-sized area if you chose block precision), its name and what you allow.",
    never: "Your name, address, email or phone. No video of any kind.",
  },
  {
    key: "requests",
    title: "Let the police ask me for footage",
    means: "When a supervisor approves an investigator's request for a place and time that includes this camera, you get a message and decide each time: upload a clip or decline.",
    never: "Nothing is ever sent without you. Requests are limited to a small area and a short time window, and you can say no.",
  },
  {
    key: "direct_fetch",
    title: "Let ConsentCam fetch a requested clip for me",
    means: "For an approved request only, the platform copies exactly the requested time from your connected camera or recorder, so you do not have to upload it yourself.",
    never: "Anything outside the requested time window, browsing your recordings, or live view. It needs a connected camera; with a manual camera nothing happens.",
  },
];

export const LIVE = [
  { value: "never", title: "Never", means: "Nobody can watch this camera live." },
  { value: "emergency_only", title: "Only during a declared emergency", means: "A supervisor declares an emergency for an area and a time limit; only then, and only for a logged reason, may an investigator watch live." },
  { value: "always", title: "Any time, for a logged reason", means: "An investigator may open a time-limited live view; each one has a reason and is in your access log." },
];

const DAY = 86400000;

/** Point in GeoJSON Polygon or MultiPolygon (ray casting; good enough for naming the local agency). */
export function contains(geometry, lat, lon) {
  const inRing = (ring) => {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if ((yi > lat) !== (yj > lat) && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  };
  const inPolygon = (rings) => inRing(rings[0]) && !rings.slice(1).some(inRing);
  if (!geometry) return false;
  if (geometry.type === "Polygon") return inPolygon(geometry.coordinates);
  if (geometry.type === "MultiPolygon") return geometry.coordinates.some(inPolygon);
  return false;
}

export function localAgency(jurisdictions, lat, lon) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  const found = jurisdictions.find((f) => contains(f.geometry, lat, lon));
  return found ? found.properties : null;
}

/**
 * The permissions fieldset. `grant` is the grant in force (or null for a new camera); `jurisdictions` the public
 * outlines (for naming agencies); `where` a function returning {lat, lon} of the camera.
 */
export function permissionsFieldset(grant, jurisdictions, where) {
  counter += 1;
  const id = `perm-${counter}`;
  const current = grant && grant.in_force ? grant : { map: false, requests: false, direct_fetch: false, live: "never", share_with: [], expires_at: null };
  const agencyLine = h("p", { class: "help agency-line" });
  const items = PERMISSIONS.map((p) => {
    const inputId = `${id}-${p.key}`;
    return h("div", { class: "permission" },
      h("label", { class: "check", for: inputId },
        h("input", { type: "checkbox", id: inputId, name: `perm_${p.key}`, checked: Boolean(current[p.key]), "aria-describedby": `${inputId}-means ${inputId}-never` }),
        h("span", {}, h("strong", {}, p.title))),
      h("p", { class: "means", id: `${inputId}-means` }, h("strong", {}, "What it means: "), p.means),
      h("p", { class: "never", id: `${inputId}-never` }, h("strong", {}, "It never allows: "), p.never));
  });
  const live = h("fieldset", { class: "permission live-options" },
    h("legend", {}, "Live view"),
    LIVE.map((o) => h("label", { class: "check" },
      h("input", { type: "radio", name: `${id}-live`, value: o.value, checked: current.live === o.value, dataset: { role: "live" } }),
      h("span", {}, h("strong", {}, o.title), ": ", o.means))),
    h("p", { class: "never" }, h("strong", {}, "It never allows: "), "recording your live view for later, or face recognition: ConsentCam refuses to load any such software."));
  const shareBox = h("div", { class: "share-list" });
  const share = h("fieldset", { class: "permission" }, h("legend", {}, "Also share with other agencies (optional)"),
    h("p", { class: "means" }, "They get the same permissions as the local agency. Without this, only the agency whose area holds the camera receives anything."),
    shareBox);
  const expiryId = `${id}-exp`;
  const preset = current.expires_at ? "date" : "never";
  const dateInput = h("input", { type: "date", id: `${expiryId}-date`, name: "expires_at", "aria-label": "End date" });
  if (current.expires_at) dateInput.value = String(current.expires_at).slice(0, 10);
  const expiry = h("fieldset", { class: "permission" }, h("legend", {}, "Permissions end"),
    [["never", "When I revoke them"], ["30", "In 30 days"], ["90", "In 90 days"], ["365", "In a year"], ["date", "On a date:"]].map(([value, text]) =>
      h("label", { class: "check" }, h("input", { type: "radio", name: `${expiryId}`, value, checked: value === preset, dataset: { role: "expiry" } }), h("span", {}, text))),
    dateInput,
    h("p", { class: "help" }, "When they end, everything stops by itself: the camera leaves the map and open requests are cancelled."));
  const fieldset = h("fieldset", { class: "permissions" }, h("legend", {}, "What the police may do"), agencyLine, items, live, share, expiry);

  fieldset.refresh = () => {
    const at = where ? where() : {};
    const local = localAgency(jurisdictions, at.lat, at.lon);
    agencyLine.textContent = local
      ? `The local police agency for this spot: ${local.name}.`
      : Number.isFinite(at.lat) ? "No agency's area covers this spot; only agencies you share with below can receive anything." : "Place the camera to see which police agency covers it.";
    const chosen = new Set(fieldset.readShares ? fieldset.readShares() : current.share_with);
    shareBox.replaceChildren(...jurisdictions.filter((f) => !local || f.id !== local.id).map((f) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "share_with", value: f.id, checked: chosen.has(f.id) }), h("span", {}, f.properties.name))));
    if (!shareBox.children.length) shareBox.append(h("p", { class: "help" }, "There are no other agencies on this server."));
  };
  fieldset.readShares = () => Array.from(shareBox.querySelectorAll('input[name="share_with"]:checked'), (i) => i.value);
  fieldset.refresh();
  return fieldset;
}

/** The grant body (PUT /api/v1/cameras/{id}/grants) from the fieldset. */
export function readGrant(fieldset) {
  const checked = (name) => Boolean(fieldset.querySelector(`input[name="${name}"]`)?.checked);
  const live = fieldset.querySelector('input[data-role="live"]:checked');
  const expiry = fieldset.querySelector('input[data-role="expiry"]:checked');
  let expires = null;
  if (expiry && expiry.value === "date") {
    const value = fieldset.querySelector('input[name="expires_at"]').value;
    if (!value) {
      throw new ApiError(422, { title: "Choose an end date", detail: "Pick the date the permissions end, or another choice.",
        errors: [{ loc: ["body", "expires_at"], msg: "Choose the date the permissions end" }] });
    }
    expires = new Date(`${value}T23:59:59`).toISOString();
  } else if (expiry && expiry.value !== "never") {
    expires = new Date(Date.now() + Number(expiry.value) * DAY).toISOString();
  }
  const body = {
    map: checked("perm_map"), requests: checked("perm_requests"), direct_fetch: checked("perm_direct_fetch"),
    live: live ? live.value : "never", share_with: fieldset.readShares(),
  };
  if (expires) body.expires_at = expires;
  return body;
}

/** Short chips for a grant: what is shared right now. */
export function grantChips(grant) {
  if (!grant || !grant.in_force) return [h("li", { class: "chip chip--off" }, "Nothing shared")];
  const chips = [];
  const on = (text) => chips.push(h("li", { class: "chip chip--on" }, text));
  if (grant.map) on("On the police map");
  if (grant.requests) on("May be asked for footage");
  if (grant.direct_fetch) on("Clips fetched for approved requests");
  if (grant.live === "emergency_only") on("Live in emergencies");
  if (grant.live === "always") on("Live view");
  if (grant.share_with && grant.share_with.length) on(`Shared with ${grant.share_with.length} more ${grant.share_with.length === 1 ? "agency" : "agencies"}`);
  if (!chips.length) chips.push(h("li", { class: "chip chip--off" }, "Nothing shared"));
  if (grant.expires_at) chips.push(h("li", { class: "chip chip--warn" }, `Ends ${String(grant.expires_at).slice(0, 10)}`));
  return chips;
}
