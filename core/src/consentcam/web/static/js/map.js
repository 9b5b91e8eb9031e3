// Leaflet maps of the pages. Street tiles come from the configured tile server; with none (air-gapped sites, or
// tiles that cannot be reached) the map is a plain background with jurisdiction outlines and street-free markers.
import { get } from "./api.js";
import { config, h } from "./ui.js";

const L = window.L;
const EARTH_RADIUS_M = 6371008.8;
export const COLOURS = { exact: "#1747a6", block: "#b4570a", fence: "#6d28d9", jurisdiction: "#334155", mine: "#17643a" };

export function makeMap(element, { note } = {}) {
  if (!L) throw new Error("the map library did not load");
  const settings = config();
  const map = L.map(element, { zoomControl: true, keyboard: true, attributionControl: true, zoomSnap: 0.25 });
  map.attributionControl.setPrefix(false);
  if (settings.tile_url) {
    const layer = L.tileLayer(settings.tile_url, { attribution: settings.tile_attribution || "", maxZoom: 19, crossOrigin: false });
    let failed = 0;
    layer.on("tileerror", () => {
      failed += 1;
      if (failed === 4 && note) note.textContent = "The street map could not be loaded; outlines and cameras are still shown.";
    });
    layer.addTo(map);
  } else {
    element.classList.add("plain");
    map.attributionControl.addAttribution("No street map on this server: outlines only");
  }
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  map.setView([41.88, -87.63], 14);
  // Layout settles after the map is made (grids, messages above it): keep Leaflet's idea of its size right.
  if (window.ResizeObserver) {
    const observer = new ResizeObserver(() => { if (element.isConnected && element.offsetWidth) map.invalidateSize(); });
    observer.observe(element);
    map.on("unload", () => observer.disconnect());
  }
  return map;
}

/** Every agency's jurisdiction (public), as dashed outlines with their names. Returns the layer. */
export async function addJurisdictions(map, { only } = {}) {
  const collection = await get("/api/v1/jurisdictions");
  const features = collection.features.filter((f) => !only || f.id === only);
  const layer = L.geoJSON({ type: "FeatureCollection", features }, {
    style: (feature) => ({
      color: COLOURS.jurisdiction, weight: 2, dashArray: "6 5", fill: true, fillOpacity: 0.03, className: `jurisdiction jurisdiction-${feature.id}`,
    }),
    interactive: false,
    onEachFeature: (feature, layer) => {
      layer.bindTooltip(feature.properties.name, { permanent: features.length > 1, direction: "center", className: "jurisdiction-label" });
    },
  }).addTo(map);
  return { layer, features, bounds: features.length ? layer.getBounds() : null };
}

/** Destination point from (lat, lon) after `distance` metres on `bearing` degrees (spherical Earth). */
export function destination(lat, lon, bearing, distance) {
  const d = distance / EARTH_RADIUS_M;
  const b = (bearing * Math.PI) / 180;
  const p1 = (lat * Math.PI) / 180;
  const l1 = (lon * Math.PI) / 180;
  const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(b));
  const l2 = l1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
  return [(p2 * 180) / Math.PI, (((l2 * 180) / Math.PI + 540) % 360) - 180];
}

export function bearingTo(lat1, lon1, lat2, lon2) {
  const p1 = (lat1 * Math.PI) / 180;
  const p2 = (lat2 * Math.PI) / 180;
  const dl = ((lon2 - lon1) * Math.PI) / 180;
  const y = Math.sin(dl) * Math.cos(p2);
  const x = Math.cos(p1) * Math.sin(p2) - Math.sin(p1) * Math.cos(p2) * Math.cos(dl);
  return (((Math.atan2(y, x) * 180) / Math.PI) + 360) % 360;
}

export function distanceM(lat1, lon1, lat2, lon2) {
  const p1 = (lat1 * Math.PI) / 180;
  const p2 = (lat2 * Math.PI) / 180;
  const dp = p2 - p1;
  const dl = ((lon2 - lon1) * Math.PI) / 180;
  const a = Math.sin(dp / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(a));
}

/** The view cone of a camera as a polygon's corners. */
export function conePoints(lat, lon, view) {
  if (!view) return null;
  const { bearing_deg: bearing, fov_deg: fov, range_m: range } = view;
  const points = fov >= 360 ? [] : [[lat, lon]];
  const steps = Math.max(6, Math.round(fov / 6));
  for (let i = 0; i <= steps; i += 1) points.push(destination(lat, lon, bearing - fov / 2 + (fov * i) / steps, range));
  return points;
}

export function coneLayer(lat, lon, view, colour = COLOURS.exact) {
  const points = conePoints(lat, lon, view);
  if (!points) return null;
  return L.polygon(points, { color: colour, weight: 1, fillColor: colour, fillOpacity: 0.18, interactive: false });
}

/** A camera dot that needs no street map: a circle marker with a white rim. */
export function cameraDot(lat, lon, { colour = COLOURS.exact, id, label } = {}) {
  const marker = L.circleMarker([lat, lon], {
    radius: 7, color: "#ffffff", weight: 2, fillColor: colour, fillOpacity: 1,
    className: ["camera-dot", id ? `camera-${id}` : ""].join(" ").trim(),
  });
  if (label) marker.bindTooltip(label);
  return marker;
}

/** A block-precision camera: an area, not a point. */
export function cameraArea(lat, lon, radiusM, { id, label } = {}) {
  const area = L.circle([lat, lon], {
    radius: Math.max(radiusM, 30), color: COLOURS.block, weight: 1.5, dashArray: "4 4", fillColor: COLOURS.block, fillOpacity: 0.14,
    className: ["camera-area", id ? `camera-${id}` : ""].join(" ").trim(),
  });
  if (label) area.bindTooltip(label);
  return area;
}

/** Turn on polygon and circle drawing (Leaflet-Geoman); `onChange(layer|null)` runs after every draw or edit. */
export function enableFenceDrawing(map, onChange) {
  const pm = map.pm;
  if (!pm) throw new Error("the drawing library did not load");
  pm.setGlobalOptions({
    pathOptions: { color: COLOURS.fence, fillColor: COLOURS.fence, fillOpacity: 0.15, weight: 3 },
    templineStyle: { color: COLOURS.fence }, hintlineStyle: { color: COLOURS.fence, dashArray: [5, 5] },
    snappable: false, allowSelfIntersection: false,
  });
  pm.addControls({
    position: "topleft", drawMarker: false, drawCircleMarker: false, drawPolyline: false, drawRectangle: true,
    drawPolygon: true, drawCircle: true, drawText: false, editMode: true, dragMode: true, cutPolygon: false,
    removalMode: true, rotateMode: false,
  });
  let fence = null;
  const set = (layer) => {
    if (fence && fence !== layer) map.removeLayer(fence);
    fence = layer;
    if (layer) {
      layer.on("pm:edit pm:dragend", () => onChange(layer));
      layer.on("pm:remove", () => { if (fence === layer) { fence = null; onChange(null); } });
    }
    onChange(layer);
  };
  map.on("pm:create", (event) => set(event.layer));
  map.on("pm:remove", (event) => { if (event.layer === fence) { fence = null; onChange(null); } });
  return {
    get layer() { return fence; },
    setCircle(lat, lon, radius) {
      const circle = L.circle([lat, lon], { radius, color: COLOURS.fence, fillColor: COLOURS.fence, fillOpacity: 0.15, weight: 3 }).addTo(map);
      set(circle);
      map.fitBounds(circle.getBounds(), { animate: false, maxZoom: 17 });
    },
    clear() { if (fence) map.removeLayer(fence); fence = null; onChange(null); },
  };
}

/** The request API's area for a drawn layer: {center, radius_m} for a circle, else a GeoJSON Polygon. */
export function areaOf(layer) {
  if (!layer) return null;
  if (layer instanceof L.Circle) {
    const c = layer.getLatLng();
    return { center: { lat: round(c.lat), lon: round(c.lng) }, radius_m: Math.round(layer.getRadius() * 10) / 10 };
  }
  const geometry = layer.toGeoJSON(7).geometry;
  return geometry.type === "Polygon" ? geometry : null;
}

export function describeArea(area) {
  if (!area) return "No fence drawn yet.";
  if (area.center) return `Circle of ${Math.round(area.radius_m)} m around ${area.center.lat.toFixed(5)}, ${area.center.lon.toFixed(5)}`;
  return `Polygon with ${area.coordinates[0].length - 1} corners`;
}

export const round = (x) => Math.round(x * 1e6) / 1e6;

/** Draw a saved area (GeoJSON Polygon or circle) read-only. */
export function areaLayer(area, colour = COLOURS.fence) {
  if (!area) return null;
  const style = { color: colour, fillColor: colour, fillOpacity: 0.12, weight: 2, interactive: false };
  if (area.center) return L.circle([area.center.lat, area.center.lon], { radius: area.radius_m, ...style });
  return L.geoJSON(area, { style });
}

export function legendNote(text) { return h("p", { class: "map-note" }, text); }
