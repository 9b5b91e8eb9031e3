// Upload of a clip through a request item's private link: drag and drop or choose, sent in chunks with
// Content-Range so that an interrupted upload resumes from what the server already has, with a progress bar,
// and a receipt with the SHA-256 the server computed (and, for files that fit in memory, the browser's own).
import { ApiError, csrf, get, problemOf } from "./api.js";
import { bytes, errorBox, h, show, when } from "./ui.js";

const DEFAULT_CHUNK = 8 * 1024 * 1024;
const MAX_RETRIES = 6;
const LOCAL_HASH_LIMIT = 256 * 1024 * 1024;
let counter = 0;

const chunkSize = () => {
  const n = Number(globalThis.CONSENTCAM_UPLOAD_CHUNK_BYTES);
  return Number.isFinite(n) && n >= 1024 ? Math.floor(n) : DEFAULT_CHUNK;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** PUT one piece with XMLHttpRequest (fetch cannot report upload progress). Resolves {status, body}. */
function putPiece(url, blob, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded); });
    xhr.addEventListener("load", async () => {
      const response = new Response(xhr.status === 204 ? null : xhr.responseText, {
        status: xhr.status, headers: { "Content-Type": xhr.getResponseHeader("Content-Type") || "" },
      });
      if (xhr.status >= 200 && xhr.status < 300) {
        let body = null;
        try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { body = null; }
        resolve({ status: xhr.status, body });
      } else {
        reject(await problemOf(response));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, {})));
    xhr.addEventListener("abort", () => reject(new ApiError(0, { title: "Upload stopped", detail: "The upload was interrupted." })));
    xhr.send(blob);
  });
}

async function serverReceived(token) {
  try {
    const info = await get(`/api/v1/uploads/${encodeURIComponent(token)}`);
    return Number.isFinite(info.received) ? info.received : 0;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.detail === "Not found") return 0;
    throw error;
  }
}

async function localSha256(file) {
  if (!globalThis.crypto || !crypto.subtle || file.size > LOCAL_HASH_LIMIT) return null;
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function receiptView(receipt, { localHash } = {}) {
  const rows = [
    h("dt", {}, "SHA-256"), h("dd", { class: "mono sha256" }, receipt.sha256),
    h("dt", {}, "Size"), h("dd", {}, `${bytes(receipt.size)} (${receipt.size} bytes)`),
  ];
  if (receipt.received_at) rows.push(h("dt", {}, "Received"), h("dd", {}, when(receipt.received_at)));
  if (receipt.evidence_id) rows.push(h("dt", {}, "Receipt number"), h("dd", { class: "mono" }, receipt.evidence_id));
  const check = localHash === undefined ? null : localHash === null
    ? null
    : h("p", {}, localHash === receipt.sha256
      ? "Your browser computed the same SHA-256 from your file: the clip arrived unchanged."
      : "Warning: your browser computed a different SHA-256 from your file. Please upload it again.");
  return h("div", { class: "receipt" },
    h("p", {}, h("strong", {}, "Clip received. "), "The SHA-256 fingerprint below identifies exactly this file; keep it as your receipt."),
    h("dl", {}, rows), check);
}

/**
 * The upload widget for one private link token. `onDone(receipt)` runs once the clip is complete.
 */
export function uploader(token, { onDone, label = "Upload the clip" } = {}) {
  counter += 1;
  const id = `upload-${counter}`;
  const url = `/api/v1/uploads/${encodeURIComponent(token)}`;
  const input = h("input", { type: "file", id: `${id}-file`, accept: "video/*,.mp4,.mov,.mkv,.avi,.ts,.webm,.m4v,.3gp", class: "file-input" });
  const zone = h("div", { class: "dropzone", dataset: { token } },
    h("p", {}, h("strong", {}, label)),
    h("p", {}, "Drag the video file here, or ", input, h("label", { for: input.id, class: "file-button" }, "choose a file")),
    h("p", { class: "help" }, "Only this clip is shared, only with this request. Large files can resume if the connection drops."));
  const progressArea = h("div", { class: "progress-area" });
  const announce = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const root = h("div", { class: "uploader" }, zone, progressArea, announce);
  let running = false;

  async function start(file) {
    if (running || !file) return;
    if (!file.size) {
      show(progressArea, errorBox(new ApiError(422, { title: "This file is empty", detail: "Choose the video file your camera exported." })));
      return;
    }
    running = true;
    zone.hidden = true;
    const bar = h("progress", { id: `${id}-bar`, max: "100", value: "0" });
    const text = h("p", { class: "progress-text", id: `${id}-text` }, "Starting…");
    show(progressArea, h("div", { class: "progress" }, h("label", { for: bar.id }, `Uploading ${file.name}`), bar, text));
    announce.textContent = `Uploading ${file.name}`;
    const size = file.size;
    const chunk = chunkSize();
    const remember = `consentcam-upload:${token}`;
    const signature = `${file.name}|${size}|${file.lastModified}`;
    const render = (sent) => {
      const pct = Math.min(100, Math.floor((sent / size) * 100));
      bar.value = pct;
      text.textContent = `${pct}% (${bytes(Math.min(sent, size))} of ${bytes(size)})`;
    };
    try {
      let offset = 0;
      const previous = sessionStorage.getItem(remember);
      if (previous === signature) offset = Math.min(await serverReceived(token), size);
      sessionStorage.setItem(remember, signature);
      if (offset > 0) text.textContent = `Resuming from ${bytes(offset)}…`;
      let failures = 0;
      let receipt = null;
      while (!receipt) {
        const end = Math.min(offset + chunk, size);
        const headers = { "Content-Type": file.type || "application/octet-stream" };
        if (size > chunk || offset > 0) headers["Content-Range"] = `bytes ${offset}-${end - 1}/${size}`;
        if (csrf()) headers["X-CSRF-Token"] = csrf();
        try {
          const result = await putPiece(url, file.slice(offset, end), headers, (loaded) => render(offset + loaded));
          failures = 0;
          if (result.body && result.body.sha256) {
            receipt = result.body;
          } else {
            offset = result.body && Number.isFinite(result.body.received) ? result.body.received : end;
            render(offset);
            if (offset >= size) throw new ApiError(500, { title: "The upload did not finish", detail: "The server has every byte but sent no receipt. Please try again." });
          }
        } catch (error) {
          const retryable = error instanceof ApiError && (error.status === 0 || error.status >= 500 || error.status === 409 || error.status === 416 || error.status === 429);
          failures += 1;
          if (!retryable || failures > MAX_RETRIES) throw error;
          text.textContent = `Connection trouble; resuming (attempt ${failures} of ${MAX_RETRIES})…`;
          await sleep(Math.min(500 * 2 ** (failures - 1), 8000));
          offset = Math.min(await serverReceived(token), size);
        }
      }
      render(size);
      progressArea.querySelector("label").textContent = `Uploaded ${file.name}`;
      sessionStorage.removeItem(remember);
      announce.textContent = "Upload complete. Your receipt is shown.";
      const full = { ...receipt, size: receipt.size ?? size };
      const view = receiptView(full, {});
      progressArea.append(view);
      localSha256(file).then((local) => { if (local) view.replaceWith(receiptView(full, { localHash: local })); }).catch(() => {});
      if (onDone) onDone(full);
    } catch (error) {
      zone.hidden = false;
      progressArea.append(errorBox(error, { context: "The upload failed" }));
      announce.textContent = "The upload failed.";
    } finally {
      running = false;
    }
  }

  input.addEventListener("change", () => start(input.files && input.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    start(file);
  });
  return root;
}

/** The token of a private link or upload URL (".../u/TOKEN" or ".../api/v1/uploads/TOKEN"). */
export function tokenOf(link) {
  if (!link) return null;
  const path = new URL(link, location.origin).pathname;
  const parts = path.split("/").filter(Boolean);
  return parts.length ? decodeURIComponent(parts[parts.length - 1]) : null;
}
