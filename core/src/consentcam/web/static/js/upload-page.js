// The private upload page behind a request's link (/u/TOKEN): no sign-in, one camera, one request.
import { ApiError, get, post } from "./api.js";
import { receiptView, uploader } from "./upload.js";
import { $, errorBox, h, initHeader, notice, show, timeOnly, when } from "./ui.js";

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const info = $("#upload-info");
const area = $("#upload-area");

async function main() {
  initHeader().catch(() => {});
  let status;
  try {
    status = await get(`/api/v1/uploads/${encodeURIComponent(token)}`);
  } catch (error) {
    const gone = error instanceof ApiError && (error.status === 410 || error.status === 404);
    show(info, errorBox(gone ? new ApiError(error.status, {
      title: error.status === 410 ? "This link no longer works" : "This link is not known",
      detail: error.status === 410
        ? `${error.detail} Nothing more is needed from you.`
        : "Check that you copied the whole link from the message. Links work only for the request they were sent for.",
    }) : error));
    return;
  }
  show(info,
    h("h2", {}, `Case ${status.case_number}${status.agency ? ` · ${status.agency}` : ""}`),
    status.description ? h("p", {}, status.description) : null,
    h("ul", { class: "facts" },
      h("li", {}, `Time asked about: ${when(status.window.start)} to ${timeOnly(status.window.end)} (your local time)`),
      status.camera_label ? h("li", {}, `Camera: ${status.camera_label}`) : null),
    h("p", { class: "help" }, "Upload only the part of your recording that covers this time, if you can. Nothing else from your camera is shared."));
  const parts = [];
  for (const r of status.receipts || []) parts.push(receiptView(r));
  parts.push(uploader(token, {
    label: (status.receipts || []).length ? "Add another clip" : "Upload the clip",
    onDone: () => {
      decline.remove();
      notice(declined, "Thank you. The clip is delivered for this request only; you can close this page.");
    },
  }));
  const decline = h("button", { type: "button", class: "secondary", id: "decline" }, "Decline this request");
  const declined = h("div", { class: "status", role: "status" });
  decline.addEventListener("click", async () => {
    decline.disabled = true;
    try {
      await post(`/api/v1/uploads/${encodeURIComponent(token)}/decline`, {});
      notice(declined, "You declined. Nothing was shared, and you will not be asked again for this request.");
      area.querySelectorAll(".uploader").forEach((u) => u.remove());
      decline.remove();
    } catch (error) {
      show(declined, errorBox(error, { context: "Not declined" }));
      decline.disabled = false;
    }
  });
  parts.push(h("div", { class: "actions" }, decline), declined);
  show(area, parts);
}

main().catch((error) => show(info, errorBox(error)));
