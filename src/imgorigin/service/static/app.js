// imgorigin page: choose a model or classifier, drop images, read each image's answer with its error rates.
// Images are sent one request at a time; every text from the server is set with textContent, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { key: sessionStorage.getItem("imgorigin-key") || "", models: [], classifiers: [], calibrations: {} };
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || { code: "http_" + response.status, message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function number(value) {
  if (value === null || value === undefined) return "–";
  const x = Number(value);
  return x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4) ? x.toExponential(2) : x.toPrecision(3);
}

async function start() {
  try {
    const models = await api("/v1/models");
    const classifiers = await api("/v1/classifiers");
    state.models = models.models;
    state.classifiers = classifiers.classifiers;
    $("auth").hidden = true;
    fill($("model"), state.models);
    fill($("classifier"), state.classifiers);
    $("skipped").textContent = models.skipped.map((s) => `${s.id} is not served: ${s.reason}`).join(" ");
    if (!state.models.length && state.classifiers.length) document.querySelector("input[value=attribute]").click();
    showOperatingPoint();
    $("status").textContent = "Ready.";
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      $("auth").hidden = false;
      $("auth-message").textContent = error.message;
    } else if (error.status === 503) {
      $("status").textContent = `${error.message}; retrying…`;
      setTimeout(start, 2000);
    } else {
      $("status").textContent = `error: ${error.message}`;
    }
  }
}

function fill(select, entries) {
  select.replaceChildren(...entries.map((entry) => new Option(entry.id, entry.id)));
}

function chosen() {
  const list = mode() === "verify" ? state.models : state.classifiers;
  const id = mode() === "verify" ? $("model").value : $("classifier").value;
  return list.find((entry) => entry.id === id);
}

function showOperatingPoint() {
  const mine = mode() === "verify";
  $("verify-controls").hidden = !mine;
  $("attribute-controls").hidden = mine;
  const entry = chosen();
  if (!entry) {
    $("operating-point").textContent = "";
    return;
  }
  if (!mine) {
    $("confirm").disabled = !entry.confirm;
    if (!entry.confirm) $("confirm").checked = false;
  } else {
    $("alpha").value = entry.calibration.alpha;
  }
  $("operating-point").textContent = entry.operating_point;
}

async function calibration(model, alpha) {
  const key = `${model}@${alpha}`;
  if (!state.calibrations[key]) {
    state.calibrations[key] = api(`/v1/models/${encodeURIComponent(model)}/calibration?alpha=${alpha}`);
  }
  return state.calibrations[key];
}

function plot(view, score, verdict) {
  // the model's own calibration scores as a histogram on a log axis, the threshold at α, and this image's score
  const width = 320, height = 90, left = 6, right = 6, base = 62, bins = 24;
  const floor = Math.max(view.floor || 0, 1e-12);
  const values = view.scores.concat([score]).map((v) => Math.log10(Math.max(v, floor)));
  const lo = Math.min(...values), hi = Math.max(...values) + 1e-9;
  const x = (v) => left + ((Math.log10(Math.max(v, floor)) - lo) / (hi - lo)) * (width - left - right);
  const counts = new Array(bins).fill(0);
  for (const s of view.scores) counts[Math.min(bins - 1, Math.floor(((Math.log10(Math.max(s, floor)) - lo) / (hi - lo)) * bins))]++;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "plot");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
    return node;
  };
  const most = Math.max(...counts, 1), step = (width - left - right) / bins;
  counts.forEach((count, i) => {
    const h = (count / most) * 48;
    add("rect", { x: left + i * step, y: base - h, width: Math.max(step - 1, 1), height: h, fill: "#999" });
  });
  if (view.threshold !== null) {
    const t = x(view.threshold);
    add("line", { x1: t, x2: t, y1: 8, y2: base, stroke: "#c00", "stroke-dasharray": "3,2" });
    add("text", { x: Math.min(t + 2, width - 60), y: 10 }, `threshold α=${view.alpha}`);
  }
  const colour = { member: "#1a7f37", "non-member": "#1f5fa8", inconclusive: "#c60" }[verdict] || "#000";
  const s = x(score);
  add("line", { x1: s, x2: s, y1: 4, y2: base + 4, stroke: colour, "stroke-width": 2 });
  add("line", { x1: left, x2: width - right, y1: base, y2: base, stroke: "#555" });
  add("text", { x: left, y: base + 14 }, number(Math.pow(10, lo)));
  add("text", { x: width - right - 40, y: base + 14 }, number(Math.pow(10, hi)));
  add("text", { x: left, y: base + 26 }, `grey: model's own ${view.scores.length} images; line: this image`);
  add("title", {}, "best reconstruction distance, log scale (lower = easier for the model to reproduce)");
  return svg;
}

function reasons(list) {
  const box = element("div", "reasons");
  for (const reason of list || []) box.appendChild(element("span", "", reason));
  return box;
}

function showVerification(row, record, view) {
  const verdict = record.verdict;
  row.verdict.textContent = verdict;
  row.verdict.className = `verdict ${verdict}`;
  const p = `p = ${number(record.p_value)} (conformal), Grubbs p = ${number(record.p_value_grubbs)}` +
    (record.p_value_real === null ? "" : `, p(real) = ${number(record.p_value_real)}`);
  row.details.append(
    element("div", "p-values", p),
    element("div", "small", `score ${number(record.score)}, threshold ${number(record.threshold)} at α = ${record.alpha}`),
    reasons(record.reasons),
    element("div", "small", view.operating_point),
  );
  row.plot.appendChild(plot(view, record.score, verdict));
}

function showAttribution(row, record, entry) {
  row.verdict.textContent = record.label;
  row.verdict.className = `verdict ${record.known ? "known" : record.label}`;
  const features = record.features || record;
  const top = Object.entries(features.scores || {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
  row.details.append(
    element("div", "p-values", `confidence ${number(features.confidence)}` + (record.rule ? `, rule: ${record.rule}` : "")),
    element("div", "small", top.map(([label, p]) => `${label} ${number(p)}`).join(", ")),
  );
  for (const [label, result] of Object.entries(record.verification || {})) {
    row.details.appendChild(element("div", "small", `verified against ${label}: ${result.verdict}, p = ${number(result.p_value)}`));
  }
  row.details.append(reasons(record.reasons), element("div", "small", entry.operating_point));
}

function newRow(file) {
  const box = element("div", "result");
  box.dataset.name = file.name;
  const image = element("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  const middle = element("div");
  const verdict = element("div", "verdict", "waiting…");
  const details = element("div");
  middle.append(element("div", "name", file.name), verdict, details);
  const plotBox = element("div");
  box.append(image, middle, plotBox);
  $("results").prepend(box);
  return { box, verdict, details, plot: plotBox };
}

async function send(file) {
  const row = newRow(file);
  const entry = chosen();
  const form = new FormData();
  form.append("images", file, file.name);
  try {
    if (mode() === "verify") {
      const alpha = $("alpha").value;
      form.append("model", entry.id);
      form.append("alpha", alpha);
      const [answer, view] = await Promise.all([
        api("/v1/verify", { method: "POST", body: form }),
        calibration(entry.id, alpha),
      ]);
      showRecord(row, answer.records[0], (record) => showVerification(row, record, view));
    } else {
      form.append("classifier", entry.id);
      form.append("confirm", $("confirm").checked ? "true" : "false");
      const answer = await api("/v1/attribute", { method: "POST", body: form });
      showRecord(row, answer.records[0], (record) => showAttribution(row, record, entry));
    }
  } catch (error) {
    row.verdict.textContent = `refused: ${error.code}`;
    row.verdict.className = "verdict error";
    row.details.appendChild(element("div", "small", error.message));
  }
}

function showRecord(row, record, show) {
  if (record.error || record.skipped) {
    row.verdict.textContent = "error";
    row.verdict.className = "verdict error";
    row.details.appendChild(element("div", "small", record.error || record.detail));
  } else {
    show(record);
  }
}

async function sendAll(files) {
  if (!chosen()) return;
  const list = Array.from(files);
  for (let i = 0; i < list.length; i++) {
    $("status").textContent = `Sending ${i + 1} of ${list.length}…`;
    await send(list[i]);
  }
  $("status").textContent = `Done: ${list.length} image(s).`;
}

function wire() {
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", showOperatingPoint);
  $("model").addEventListener("change", showOperatingPoint);
  $("classifier").addEventListener("change", showOperatingPoint);
  $("files").addEventListener("change", (event) => {
    sendAll(event.target.files);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    sendAll(event.dataTransfer.files);
  });
  $("key-save").addEventListener("click", () => {
    state.key = $("key").value.trim();
    sessionStorage.setItem("imgorigin-key", state.key);
    start();
  });
}

wire();
start();
