// StRA-Face console: plain JS against the service's public REST API, same origin.
const $ = (selector) => document.querySelector(selector);
const KEY = "stra.apiKey";
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const state = { info: null, infoError: null, galleryOffset: 0, galleryTotal: 0, gallerySubjects: [] };
const PAGE_SIZE = 10;

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", json, form } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["x-api-key"] = key;
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (error) {
    throw new ApiError(0, "network_error", `the service could not be reached (${error.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(response.status, error ? error.code : "http_error", error ? error.message : `HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  return data;
}

function imageForm(fields) {
  const form = new FormData();
  for (const [name, blob] of Object.entries(fields)) form.append(name, blob, blob.name || `${name}.png`);
  return form;
}

// ---------- small UI helpers ----------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value !== undefined && value !== null) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.replaceChildren(
    el("strong", {}, error.status ? `${error.status} ${error.code}` : error.code || "error"), ": ", error.message,
    error.status === 401 || error.status === 403 ? el("span", {}, " — set the API key in ", el("a", { href: "#settings" }, "Settings"), ".") : null,
  );
  box.hidden = false;
}

async function guarded(box, work) {
  showError(box, null);
  try {
    return await work();
  } catch (error) {
    showError(box, error instanceof ApiError ? error : new ApiError(0, "error", error.message));
    return undefined;
  }
}

const percent = (value) => `${(value * 100).toFixed(value >= 0.1 ? 0 : 1)}%`;

function oneIn(far) {
  return `1 in ${Math.round(1 / far).toLocaleString("en-US")}`;
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    const url = URL.createObjectURL(file);
    image.onload = () => { URL.revokeObjectURL(url); resolve(image); };  // decoded: the URL is no longer needed
    image.onerror = () => { URL.revokeObjectURL(url); reject(new ApiError(0, "not_an_image", `${file.name} could not be shown by the browser`)); };
    image.src = url;
  });
}

// Draws the image and, per face, its box, number, landmarks and optional label.
function drawFaces(canvas, image, faces, labelOf = () => "", highlight = () => false) {
  canvas.width = image.naturalWidth || image.videoWidth || image.width;
  canvas.height = image.naturalHeight || image.videoHeight || image.height;
  canvas.hidden = false;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  drawOverlay(context, canvas.width, faces, labelOf, highlight);
}

function drawOverlay(context, width, faces, labelOf, highlight = () => false) {
  const line = Math.max(2, width / 400);
  faces.forEach((face, index) => {
    const { x1, y1, x2, y2 } = face.box;
    const colour = COLOURS[index % COLOURS.length];
    context.lineWidth = highlight(index) ? line * 2.5 : line;
    context.strokeStyle = colour;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.fillStyle = colour;
    for (const [x, y] of face.landmarks || []) {
      context.beginPath();
      context.arc(x, y, line * 1.3, 0, 2 * Math.PI);
      context.fill();
    }
    const label = `${index + 1}${labelOf(face, index) ? " " + labelOf(face, index) : ""}`;
    const size = Math.max(12, Math.round(Math.max(width, context.canvas.height) / 40));
    context.font = `600 ${size}px system-ui, sans-serif`;
    const textWidth = context.measureText(label).width + size * 0.6;
    const top = y1 > size * 1.4 ? y1 - size * 1.4 : y2;
    context.fillRect(x1 - line / 2, top, textWidth, size * 1.4);
    context.fillStyle = "#fff";
    context.fillText(label, x1 + size * 0.3, top + size * 1.05);
  });
}

function wireDropZones() {
  for (const zone of document.querySelectorAll("[data-drop]")) {
    const input = zone.querySelector("input[type=file]");
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (!event.dataTransfer.files.length) return;
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
    input.addEventListener("change", () => {
      const name = input.files[0] ? input.files[0].name : "";
      zone.querySelector("span").dataset.file = name;
    });
  }
}

// ---------- pages ----------

function showPage() {
  const page = (location.hash || "#analyze").slice(1);
  const known = document.querySelector(`section[data-page="${page}"]`) ? page : "analyze";
  for (const section of document.querySelectorAll("section[data-page]")) section.hidden = section.dataset.page !== known;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === known) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (known === "gallery") refreshGallery();
  if (known === "settings") renderInfo();
  if (known !== "live") stopLive();
}

// Service info: FAR choices for verify/identify; a banner when the key is missing or wrong.
async function loadInfo() {
  const banner = $("#banner");
  try {
    state.info = await api("/v1/info");
    state.infoError = null;
  } catch (error) {
    state.info = null;
    state.infoError = error;
  }
  showError(banner, state.infoError);
  fillFarSelects();
  return state.info;
}

function fillFarSelects() {
  const thresholds = state.info && state.info.thresholds;
  for (const select of document.querySelectorAll(".far-select")) {
    const previous = select.value;
    select.replaceChildren();
    if (!thresholds) {
      select.append(el("option", { value: "" }, "server default"));
      continue;
    }
    for (const far of Object.keys(thresholds.far_to_cosine)) {
      select.append(el("option", { value: far }, `${oneIn(Number(far))} (${far})`));
    }
    select.value = previous || String(thresholds.default_far);
    if (!select.value) select.selectedIndex = 0;
  }
}

// ---------- Analyze ----------

function shortenedForDisplay(result) {
  return JSON.stringify(result, (key, value) => {
    if (key === "overlay_png" && typeof value === "string") return `<base64 PNG, ${value.length} characters>`;
    if (key === "embedding" && Array.isArray(value)) return `<${value.length} numbers>`;
    return value;
  }, 2);
}

function expressionBars(expression) {
  const rows = Object.entries(expression.probabilities).sort((a, b) => b[1] - a[1]);
  return el("ul", { class: "bars", "aria-label": "expression probabilities" },
    rows.map(([name, p]) => el("li", { class: name === expression.dominant ? "dominant" : "" },
      el("span", { class: "name" }, name),
      el("span", { class: "bar" }, el("span", { style: `width:${(p * 100).toFixed(1)}%` })),
      el("span", { class: "value" }, percent(p)))));
}

// The server's overlay PNG is one row: the crop, then each mode's map over it; shown here as a grid.
function modeTiles(modes) {
  const grid = el("div", { class: "mode-grid" });
  const strip = new Image();
  strip.onload = () => {
    const side = strip.naturalHeight;
    for (let index = 0; index * side < strip.naturalWidth; index++) {
      const tile = el("canvas", { width: side, height: side, "aria-hidden": "true" });
      tile.getContext("2d").drawImage(strip, index * side, 0, side, side, 0, 0, side, side);
      grid.append(el("figure", {}, tile, el("figcaption", {}, index ? `mode ${index}` : "crop")));
    }
  };
  strip.src = `data:image/png;base64,${modes.overlay_png}`;
  return grid;
}

function modesPanel(modes) {
  if (!modes || !modes.overlay_png) return null;
  const panel = el("div", { class: "modes", hidden: true, role: "img", "aria-label": `the aligned face and its ${modes.groups} StRA mode maps` },
    modeTiles(modes),
    el("p", { class: "hint" }, `The 48×48 crop the expression model saw, then its ${modes.groups} mode maps (${modes.grid[0]}×${modes.grid[1]} cells; blue 0 … red 1: where each mode attends).`));
  const button = el("button", { type: "button", class: "toggle", "aria-pressed": "false", "aria-expanded": "false" }, "Show mode maps");
  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-pressed", String(!panel.hidden));
    button.setAttribute("aria-expanded", String(!panel.hidden));
    button.textContent = panel.hidden ? "Show mode maps" : "Hide mode maps";
  });
  return [button, panel];
}

function faceCard(face, index) {
  return el("article", { class: "card face", style: `--accent:${COLOURS[index % COLOURS.length]}` },
    el("h3", {}, `Face ${index + 1}: `, el("span", { class: "dominant-label" }, face.expression.dominant)),
    el("p", { class: "hint" }, `detector score ${face.score.toFixed(3)} · ${Math.round(face.box.x2 - face.box.x1)}×${Math.round(face.box.y2 - face.box.y1)} px`),
    expressionBars(face.expression),
    modesPanel(face.modes));
}

function facesSummary(found, shown, truncated) {
  const noun = found === 1 ? "face" : "faces";
  return truncated ? `${found} ${noun} found; the largest ${shown} are shown (the server's STRA_MAX_FACES cut the list)` : `${found} ${noun} found`;
}

async function analyzeFile(file) {
  const box = $("#analyze-error");
  $("#analyze-result").hidden = true;
  await guarded(box, async () => {
    let result;
    let note = "";
    try {
      result = await api("/v1/analyze?modes_overlay=true", { method: "POST", form: imageForm({ image: file }) });
    } catch (error) {
      if (error.code !== "modes_unavailable") throw error;
      result = await api("/v1/analyze", { method: "POST", form: imageForm({ image: file }) });
      note = " (this expression model has no mode maps)";
    }
    const image = await loadImage(file);  // after the API: a file it refuses gets the API's message
    drawFaces($("#analyze-canvas"), image, result.faces, (face) => face.expression.dominant);
    $("#analyze-summary").textContent = facesSummary(result.faces_found, result.faces.length, result.truncated) + note;
    $("#analyze-summary").classList.toggle("warn", result.truncated);
    $("#analyze-faces").replaceChildren(...result.faces.map(faceCard));
    $("#analyze-json").textContent = shortenedForDisplay(result);
    $("#analyze-result").hidden = false;
  });
}

// ---------- Verify ----------

function farQuery(select) {
  return select.value ? `?far=${encodeURIComponent(select.value)}` : "";
}

function meaningOf(decision) {
  if (decision.far === null) return `The threshold ${decision.threshold.toFixed(3)} was given by the request, not calibrated: no false-accept rate is known for it.`;
  return `At this threshold about ${oneIn(decision.far)} different-person pairs scores this high (false-accept rate ${decision.far}; calibrated on ${decision.calibration}).`;
}

async function verify(event) {
  event.preventDefault();
  const [file1, file2] = [$("#verify-file1").files[0], $("#verify-file2").files[0]];
  const box = $("#verify-error");
  $("#verify-result").hidden = true;
  if (!file1 || !file2) {
    showError(box, new ApiError(0, "missing_image", "choose two photos"));
    return;
  }
  await guarded(box, async () => {
    const result = await api(`/v1/verify${farQuery($("#verify-far"))}`, { method: "POST", form: imageForm({ image1: file1, image2: file2 }) });
    const [image1, image2] = await Promise.all([loadImage(file1), loadImage(file2)]);
    drawFaces($("#verify-canvas1"), image1, result.faces1, () => "", (i) => i === result.best.face1);
    drawFaces($("#verify-canvas2"), image2, result.faces2, () => "", (i) => i === result.best.face2);
    const decision = $("#verify-decision");
    decision.textContent = result.verified ? "Same person" : "Different people";
    decision.className = `decision ${result.verified ? "yes" : "no"}`;
    $("#verify-numbers").textContent = `Similarity ${result.similarity.toFixed(3)} ${result.verified ? "≥" : "<"} threshold ${result.decision.threshold.toFixed(3)} ` +
      `(best pair: face ${result.best.face1 + 1} of the first photo, face ${result.best.face2 + 1} of the second; ${result.faces1_found} and ${result.faces2_found} faces found).`;
    $("#verify-meaning").textContent = meaningOf(result.decision);
    $("#verify-result").hidden = false;
  });
}

async function previewVerify(input, canvas) {
  const file = input.files[0];
  if (!file) return;
  const image = await loadImage(file).catch(() => null);
  if (image) drawFaces(canvas, image, []);
}

// ---------- Gallery ----------

function deleteButton(label, onConfirm) {
  // Two presses: the first arms the button for 4 s (no modal dialog; works from the keyboard).
  const button = el("button", { type: "button", class: "danger" }, label);
  let timer = null;
  button.addEventListener("click", async () => {
    if (!timer) {
      button.textContent = "Really delete?";
      timer = setTimeout(() => { timer = null; button.textContent = label; }, 4000);
      return;
    }
    clearTimeout(timer);
    timer = null;
    await onConfirm();
  });
  return button;
}

function subjectRows(subject) {
  const current = subject.faces.filter((f) => f.current_model).length;
  const stale = subject.faces.length - current;
  const faces = el("ul", { class: "face-list" }, subject.faces.map((face) => el("li", {},
    el("code", {}, face.id.slice(0, 8)), ` ${face.created_at.slice(0, 16).replace("T", " ")} `,
    face.current_model ? null : el("span", { class: "badge warn" }, "needs re-enrolment"),
    deleteButton("Delete face", () => galleryAction(`/v1/subjects/${encodeURIComponent(subject.id)}/faces/${encodeURIComponent(face.id)}`)))));
  const details = el("tr", { class: "details", hidden: true }, el("td", { colspan: "4" }, subject.faces.length ? faces : el("p", { class: "hint" }, "No faces enrolled yet.")));
  const expand = el("button", { type: "button", class: "link", "aria-expanded": "false" }, subject.id);
  expand.addEventListener("click", () => {
    details.hidden = !details.hidden;
    expand.setAttribute("aria-expanded", String(!details.hidden));
  });
  const row = el("tr", { "data-subject": subject.id },
    el("td", {}, expand),
    el("td", {}, subject.name || ""),
    el("td", {}, String(subject.faces.length), stale ? el("span", { class: "badge warn", title: "enrolled with another model" }, ` ${stale} stale`) : null),
    el("td", {}, deleteButton("Delete", () => galleryAction(`/v1/subjects/${encodeURIComponent(subject.id)}`))));
  return [row, details];
}

async function galleryAction(path) {
  await guarded($("#gallery-error"), async () => {
    await api(path, { method: "DELETE" });
    await refreshGallery();
  });
}

function renderSubjects() {
  const query = $("#gallery-search").value.trim().toLowerCase();
  const shown = state.gallerySubjects.filter((s) => !query || s.id.toLowerCase().includes(query) || (s.name || "").toLowerCase().includes(query));
  $("#gallery-rows").replaceChildren(...(shown.length ? shown.flatMap(subjectRows) : [el("tr", {}, el("td", { colspan: "4", class: "hint" }, query ? "No subject on this page matches; press Find id for an exact id." : "The gallery is empty."))]));
  const last = Math.min(state.galleryOffset + PAGE_SIZE, state.galleryTotal);
  $("#gallery-page").textContent = state.galleryTotal ? `${state.galleryOffset + 1}–${last} of ${state.galleryTotal}` : "0 subjects";
  $("#gallery-prev").disabled = state.galleryOffset === 0;
  $("#gallery-next").disabled = last >= state.galleryTotal;
}

function renderEnrolments(enrolments) {
  const stale = enrolments.need_reenrolment;
  $("#gallery-enrolments").textContent = `${enrolments.current_model} enrolled faces searchable with the current model` +
    (stale ? `; ${stale} enrolled with another model ${stale === 1 ? "needs" : "need"} re-enrolment (kept, not searched).` : "; none needs re-enrolment.");
  $("#gallery-enrolments").classList.toggle("warn", stale > 0);
}

async function refreshGallery() {
  await guarded($("#gallery-error"), async () => {
    const page = await api(`/v1/subjects?limit=${PAGE_SIZE}&offset=${state.galleryOffset}`);
    if (!page.subjects.length && state.galleryOffset > 0 && page.total > 0) {  // the last page emptied by a delete
      state.galleryOffset = Math.max(0, state.galleryOffset - PAGE_SIZE);
      return refreshGallery();
    }
    state.gallerySubjects = page.subjects;
    state.galleryTotal = page.total;
    renderSubjects();
    renderEnrolments(page.enrolments);
    const select = $("#enrol-subject");
    const chosen = select.value;
    select.replaceChildren(...page.subjects.map((s) => el("option", { value: s.id }, s.name ? `${s.name} (${s.id})` : s.id)));
    if (chosen && page.subjects.some((s) => s.id === chosen)) select.value = chosen;
  });
}

async function findSubject() {
  const id = $("#gallery-search").value.trim();
  if (!id) return;
  await guarded($("#gallery-error"), async () => {
    const subject = await api(`/v1/subjects/${encodeURIComponent(id)}`);
    state.gallerySubjects = [subject];
    renderSubjects();
  });
}

async function createSubject(event) {
  event.preventDefault();
  const id = $("#subject-id").value.trim();
  const name = $("#subject-name").value.trim();
  await guarded($("#gallery-error"), async () => {
    const subject = await api("/v1/subjects", { method: "POST", json: { ...(id && { id }), ...(name && { name }) } });
    $("#subject-form").reset();
    await refreshGallery();
    $("#enrol-subject").value = subject.id;
  });
}

// A crop around one face (its box grown by 60%): enrolled with select=largest, the chosen face is the one kept.
function faceCrop(image, box) {
  const grow = 0.6;
  const width = box.x2 - box.x1;
  const height = box.y2 - box.y1;
  const x = Math.max(0, box.x1 - width * grow);
  const y = Math.max(0, box.y1 - height * grow);
  const w = Math.min(image.naturalWidth - x, width * (1 + 2 * grow));
  const h = Math.min(image.naturalHeight - y, height * (1 + 2 * grow));
  const canvas = el("canvas", { width: Math.round(w), height: Math.round(h) });
  canvas.getContext("2d").drawImage(image, x, y, w, h, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve(new File([blob], "face.png", { type: "image/png" })), "image/png"));
}

async function enrol(subjectId, file, select) {
  const result = await api(`/v1/subjects/${encodeURIComponent(subjectId)}/faces?select=${select}`, { method: "POST", form: imageForm({ image: file }) });
  $("#enrol-status").textContent = `Enrolled face ${result.face.id.slice(0, 8)} for ${result.subject_id}.`;
  $("#enrol-choose").hidden = true;
  await refreshGallery();
}

async function enrolFile(event) {
  if (event) event.preventDefault();
  const subjectId = $("#enrol-subject").value;
  const file = $("#enrol-file").files[0];
  $("#enrol-status").textContent = "";
  $("#enrol-choose").hidden = true;
  const box = $("#gallery-error");
  if (!subjectId || !file) {
    showError(box, new ApiError(0, "missing_input", subjectId ? "choose a photo" : "create a subject first"));
    return;
  }
  await guarded(box, async () => {
    const detected = await api("/v1/detect", { method: "POST", form: imageForm({ image: file }) });
    if (detected.faces.length <= 1) return enrol(subjectId, file, "single");  // none: the API says no_face
    const image = await loadImage(file);
    drawFaces($("#enrol-canvas"), image, detected.faces);
    $("#enrol-choices").replaceChildren(...detected.faces.map((face, index) =>
      el("button", { type: "button", style: `border-color:${COLOURS[index % COLOURS.length]}`, onclick: () => guarded(box, async () => enrol(subjectId, await faceCrop(image, face.box), "largest")) }, `Face ${index + 1}`)));
    $("#enrol-choose").hidden = false;
    $("#enrol-choices button").focus();
  });
}

async function identifyFile() {
  const file = $("#identify-file").files[0];
  if (!file) return;
  $("#identify-result").hidden = true;
  await guarded($("#gallery-error"), async () => {
    const result = await api(`/v1/identify${farQuery($("#identify-far"))}`, { method: "POST", form: imageForm({ image: file }) });
    const image = await loadImage(file);
    const best = (face) => face.matches.find((m) => m.accepted);
    drawFaces($("#identify-canvas"), image, result.faces, (face) => { const m = best(face); return m ? m.name || m.subject_id : "unknown"; });
    $("#identify-faces").replaceChildren(...result.faces.map((face, index) => el("article", { class: "card", style: `--accent:${COLOURS[index % COLOURS.length]}` },
      el("h3", {}, `Face ${index + 1}: `, el("span", { class: "identity" }, best(face) ? best(face).name || best(face).subject_id : "unknown")),
      face.matches.length ? el("table", { class: "matches" },
        el("thead", {}, el("tr", {}, el("th", {}, "Subject"), el("th", {}, "Similarity"), el("th", {}, "Match"))),
        el("tbody", {}, face.matches.map((m) => el("tr", { class: m.accepted ? "accepted" : "" },
          el("td", {}, m.name ? `${m.name} (${m.subject_id})` : m.subject_id), el("td", {}, m.similarity.toFixed(3)), el("td", {}, m.accepted ? "yes" : "no")))))
        : el("p", { class: "hint" }, "The gallery has no face enrolled with the current model."))));
    $("#identify-decision").textContent = `${facesSummary(result.faces_found, result.faces.length, result.truncated)}. Threshold ${result.decision.threshold.toFixed(3)}: ${meaningOf(result.decision)}`;
    $("#identify-result").hidden = false;
  });
}

// ---------- Live ----------

const live = { stream: null, running: false, done: [] };

function iou(a, b) {
  const w = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const h = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = w * h;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

function frameBlob(video, width) {
  const scale = Math.min(1, width / video.videoWidth);
  const canvas = el("canvas", { width: Math.round(video.videoWidth * scale), height: Math.round(video.videoHeight * scale) });
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, scale }), "image/jpeg", 0.85));
}

async function liveStep() {
  const video = $("#live-video");
  const { blob, scale } = await frameBlob(video, 640);
  const form = () => imageForm({ image: new File([blob], "frame.jpg", { type: "image/jpeg" }) });
  const [analyzed, identified] = await Promise.all([
    api("/v1/analyze", { method: "POST", form: form() }).catch((error) => (error.code === "no_face" ? { faces: [] } : Promise.reject(error))),
    $("#live-names").checked ? api(`/v1/identify${farQuery($("#identify-far"))}`, { method: "POST", form: form() }).catch((error) => (error.code === "no_face" ? { faces: [] } : Promise.reject(error))) : null,
  ]);
  const faces = analyzed.faces.map((face) => {
    const box = Object.fromEntries(Object.entries(face.box).map(([k, v]) => [k, v / scale]));
    const twin = identified && identified.faces.find((f) => iou(f.box, face.box) > 0.5);
    const match = twin && twin.matches.find((m) => m.accepted);
    const name = identified ? (match ? match.name || match.subject_id : "unknown") : "";
    return { box, landmarks: face.landmarks.map(([x, y]) => [x / scale, y / scale]), label: `${name ? name + " · " : ""}${face.expression.dominant}` };
  });
  const canvas = $("#live-canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  drawOverlay(context, canvas.width, faces, (face) => face.label);
  canvas.dataset.faces = String(faces.length);
  canvas.dataset.labels = faces.map((f) => f.label).join("|");
}

function showFps() {
  const now = performance.now();
  live.done = live.done.filter((t) => now - t < 10000).slice(-6);  // the last few frames: steady, yet quick to follow a change
  const span = live.done.length > 1 ? (live.done.at(-1) - live.done[0]) / 1000 : 0;
  const fps = span > 0 ? (live.done.length - 1) / span : 0;
  $("#live-fps").textContent = `${fps.toFixed(1)} frames/s`;
  $("#live-fps").dataset.frames = String(Number($("#live-fps").dataset.frames || 0) + 1);
}

// One request at a time, and no faster than the chosen rate.
async function liveLoop() {
  while (live.running) {
    const started = performance.now();
    try {
      await liveStep();
      live.done.push(started);  // start times: they are at least 1/rate apart, so the rate shown is bounded by it
      showFps();
      showError($("#live-error"), null);
    } catch (error) {
      showError($("#live-error"), error instanceof ApiError ? error : new ApiError(0, "error", error.message));
      if (error.status === 401 || error.status === 403) stopLive();
    }
    const wait = 1000 / Number($("#live-rate").value) - (performance.now() - started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function startLive() {
  await guarded($("#live-error"), async () => {
    if (!navigator.mediaDevices) throw new ApiError(0, "no_camera", "this browser gives no camera access here (the console needs https or localhost)");
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false }).catch((error) => {
      throw new ApiError(0, "no_camera", `the camera could not be opened (${error.name}: ${error.message})`);
    });
    const video = $("#live-video");
    video.srcObject = live.stream;
    await video.play();
    live.running = true;
    live.done = [];
    $("#live-toggle").textContent = "Stop camera";
    liveLoop();
  });
}

function stopLive() {
  live.running = false;
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  $("#live-toggle").textContent = "Start camera";
}

// ---------- Settings ----------

function infoTable(rows) {
  return el("table", { class: "info" }, el("tbody", {}, rows.map(([name, value]) => el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value)))));
}

async function renderInfo() {
  $("#api-key").value = sessionStorage.getItem(KEY) || "";
  const box = $("#settings-error");
  showError(box, null);
  const info = await loadInfo();
  if (!info) {
    $("#service-info").replaceChildren();
    showError(box, state.infoError);
    return;
  }
  const models = Object.entries(info.models).map(([name, model]) => [`${name} model`,
    el("span", {}, el("code", {}, model.path.split("/").at(-1)), " ", el("code", { class: "sha", title: model.sha256 }, model.sha256.slice(0, 16) + "…"),
      ` on ${model.providers.join(", ")}${model.cpu_fallback ? " (CPU fallback)" : ""}`)]);
  const thresholds = info.thresholds
    ? Object.entries(info.thresholds.far_to_cosine).map(([far, cosine]) => `FAR ${far} (${oneIn(Number(far))}): cosine ≥ ${cosine.toFixed(4)}`).join("; ") + ` — default FAR ${info.thresholds.default_far}; ${info.thresholds.source}`
    : "not calibrated for this embedding model";
  const enrolments = info.enrolments ? `${info.enrolments.current_model} current, ${info.enrolments.need_reenrolment} need re-enrolment` : "gallery unavailable";
  $("#service-info").replaceChildren(infoTable([
    ["version", info.version],
    ["ONNX Runtime", `${info.onnxruntime} (available: ${info.available_providers.join(", ")})`],
    ...models,
    ["embedding", `${info.embedding_model.name}, ${info.embedding_model.dim} dimensions`],
    ["expressions", (info.expressions || []).join(", ") || "no expression model"],
    ["thresholds", thresholds],
    ["gallery", `${info.gallery}: ${enrolments}`],
  ]));
}

function saveKey(event) {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  renderInfo();
}

// ---------- start ----------

function wire() {
  wireDropZones();
  $("#analyze-file").addEventListener("change", (event) => event.target.files[0] && analyzeFile(event.target.files[0]));
  $("#verify-form").addEventListener("submit", verify);
  $("#verify-file1").addEventListener("change", () => previewVerify($("#verify-file1"), $("#verify-canvas1")));
  $("#verify-file2").addEventListener("change", () => previewVerify($("#verify-file2"), $("#verify-canvas2")));
  $("#gallery-search").addEventListener("input", renderSubjects);
  $("#gallery-search").addEventListener("keydown", (event) => { if (event.key === "Enter") findSubject(); });
  $("#gallery-search-id").addEventListener("click", findSubject);
  $("#gallery-prev").addEventListener("click", () => { state.galleryOffset = Math.max(0, state.galleryOffset - PAGE_SIZE); refreshGallery(); });
  $("#gallery-next").addEventListener("click", () => { state.galleryOffset += PAGE_SIZE; refreshGallery(); });
  $("#subject-form").addEventListener("submit", createSubject);
  $("#enrol-form").addEventListener("submit", enrolFile);
  $("#enrol-file").addEventListener("change", () => enrolFile());
  $("#identify-file").addEventListener("change", identifyFile);
  $("#live-toggle").addEventListener("click", () => (live.running ? stopLive() : startLive()));
  $("#key-form").addEventListener("submit", saveKey);
  $("#key-clear").addEventListener("click", () => { sessionStorage.removeItem(KEY); renderInfo(); });
  window.addEventListener("hashchange", showPage);
}

wire();
loadInfo().then(showPage);
