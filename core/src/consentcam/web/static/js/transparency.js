// Public transparency report: monthly counts per agency as a chart (hand-drawn SVG) and a table, revocations,
// and each agency's policy. No sign-in; the same public API endpoint anyone can read.
import { get } from "./api.js";
import { $, h, initHeader, show, showError } from "./ui.js";

const SERIES = [
  { key: "requests", label: "Requests", colour: "#1747a6" },
  { key: "cameras_asked", label: "Cameras asked", colour: "#b4570a" },
  { key: "clips_received", label: "Clips received", colour: "#17643a" },
  { key: "live_sessions", label: "Live sessions", colour: "#6d28d9" },
  { key: "emergencies", label: "Emergencies", colour: "#a4161a" },
];
const alertBox = $("#page-alert");

function monthName(month) {
  const [y, m] = month.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleString("en", { month: "short", year: "numeric", timeZone: "UTC" });
}

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** Sum the rows of each month (over the chosen agency, or all). */
export function byMonth(rows, agencyId) {
  const months = new Map();
  for (const row of rows) {
    if (agencyId && row.agency_id !== agencyId) continue;
    const entry = months.get(row.month) || Object.fromEntries(SERIES.map((s) => [s.key, 0]));
    for (const s of SERIES) entry[s.key] += row[s.key] || 0;
    months.set(row.month, entry);
  }
  return Array.from(months.entries()).sort(([a], [b]) => a.localeCompare(b));
}

function chart(data, title) {
  const width = 860;
  const height = 320;
  const pad = { left: 48, right: 12, top: 18, bottom: 44 };
  const inner = { w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const max = niceMax(Math.max(1, ...data.flatMap(([, v]) => SERIES.map((s) => v[s.key]))));
  const y = (v) => pad.top + inner.h - (v / max) * inner.h;
  const group = inner.w / Math.max(data.length, 1);
  const barW = Math.min(26, (group * 0.8) / SERIES.length);
  const svg = h("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-svg-title", class: "bars" },
    h("title", { id: "chart-svg-title" }, title));
  for (let i = 0; i <= 5; i += 1) {
    const v = (max / 5) * i;
    svg.append(h("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: i === 0 ? "axis" : "grid" }),
      h("text", { x: pad.left - 8, y: y(v) + 4, "text-anchor": "end", class: "axis-text" }, Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  data.forEach(([month, values], gi) => {
    const x0 = pad.left + gi * group + (group - barW * SERIES.length) / 2;
    const g = h("g", { class: "month" });
    SERIES.forEach((s, si) => {
      const v = values[s.key];
      const x = x0 + si * barW;
      const bar = h("rect", { x: x + 1, y: y(v), width: Math.max(barW - 2, 1), height: Math.max(y(0) - y(v), v ? 1 : 0), fill: s.colour },
        h("title", {}, `${monthName(month)}: ${v} ${s.label.toLowerCase()}`));
      g.append(bar);
      if (v > 0 && barW >= 12) g.append(h("text", { x: x + barW / 2, y: y(v) - 4, "text-anchor": "middle", class: "axis-text" }, String(v)));
    });
    g.append(h("text", { x: pad.left + gi * group + group / 2, y: height - pad.bottom + 18, "text-anchor": "middle", class: "axis-text" }, monthName(month)));
    svg.append(g);
  });
  const legend = h("ul", { class: "chart-legend", "aria-hidden": "true" }, SERIES.map((s) =>
    h("li", {}, h("svg", { viewBox: "0 0 14 14" }, h("rect", { width: 14, height: 14, rx: 3, fill: s.colour })), s.label)));
  return [svg, legend];
}

function countsTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No requests have been made yet.");
  const totals = Object.fromEntries(SERIES.map((s) => [s.key, rows.reduce((n, r) => n + (r[s.key] || 0), 0)]));
  return h("table", {},
    h("caption", {}, "Counts per month (UTC) and agency"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Month"), h("th", { scope: "col" }, "Agency"), SERIES.map((s) => h("th", { scope: "col", class: "num" }, s.label)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("th", { scope: "row" }, monthName(r.month)), h("td", {}, r.agency), SERIES.map((s) => h("td", { class: "num" }, String(r[s.key] || 0)))))),
    h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "Total"), h("td", {}), SERIES.map((s) => h("td", { class: "num" }, String(totals[s.key]))))));
}

async function main() {
  initHeader().catch(() => {});
  let report;
  try {
    report = await get("/api/v1/transparency");
  } catch (error) {
    showError(alertBox, error, { context: "The report could not be loaded" });
    show($("#chart"), h("p", { class: "muted" }, "No data."));
    return;
  }
  const select = $("#agency-filter");
  for (const a of report.agencies) select.append(h("option", { value: a.id }, a.name));
  const draw = () => {
    const agency = report.agencies.find((a) => a.id === select.value);
    const data = byMonth(report.months, select.value);
    const who = agency ? agency.name : "all agencies";
    if (!data.length) {
      show($("#chart"), h("p", { class: "muted" }, `No requests by ${who} yet.`));
      return;
    }
    show($("#chart"), chart(data, `Monthly counts for ${who}: ${data.map(([m, v]) => `${monthName(m)}: ${SERIES.map((s) => `${v[s.key]} ${s.label.toLowerCase()}`).join(", ")}`).join("; ")}`));
    $("#chart-caption").textContent = `Monthly counts for ${who}. The table below has the same numbers.`;
  };
  select.addEventListener("change", draw);
  draw();
  show($("#counts-table"), countsTable(report.months));
  const revoked = report.revocations.reduce((n, r) => n + r.count, 0);
  show($("#revocations"),
    h("p", {}, revoked ? `Owners revoked everything on a camera ${revoked} time${revoked === 1 ? "" : "s"} in total.` : "No owner has revoked a camera's permissions yet."),
    report.revocations.length ? h("table", {}, h("caption", { class: "visually-hidden" }, "Revocations per month"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Month"), h("th", { scope: "col", class: "num" }, "Cameras revoked"))),
      h("tbody", {}, report.revocations.map((r) => h("tr", {}, h("th", { scope: "row" }, monthName(r.month)), h("td", { class: "num" }, String(r.count)))))) : null);
  show($("#policies"), report.agencies.map((a) => h("article", { class: "policy" },
    h("h3", {}, a.name, a.suspended ? " (access suspended by the city)" : ""),
    a.policy_text ? h("blockquote", {}, a.policy_text) : h("p", { class: "muted" }, "This agency has not published a policy text."),
    h("p", { class: "help" }, `Fences up to ${a.max_area_km2} km²; time windows up to ${a.max_window_hours} h; ${a.require_approval ? "a supervisor approves every request" : "requests open without a supervisor's approval"}.`))));
  document.body.dataset.ready = "true";
}

main().catch((error) => showError(alertBox, error));
