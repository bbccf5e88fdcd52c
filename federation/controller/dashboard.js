// meshfed dashboard: reads the controller's API (GET /v1/clusters, GET /v1/traffic) with the
// admin token every REFRESH_MS and redraws, and GET /v1/cost/report every COST_REFRESH_MS
// (egress by day); it never writes. The token comes from the link
// `meshfed dashboard` prints (#token=..., a fragment: never sent to the server, removed from
// the address bar at once) or from the form, and is kept in sessionStorage for this tab only.
"use strict";

const REFRESH_MS = 2000;
const WINDOW_S = 10;
const COST_REFRESH_MS = 60000;
const COST_DAYS = 7;
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function takeToken() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    sessionStorage.setItem("meshfed-token", fromLink);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("meshfed-token");
}

async function api(path, token) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (resp.status === 401) {
    sessionStorage.removeItem("meshfed-token");
    throw new Error("the controller refused the token (401): give the admin token");
  }
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

const fmt = {
  rps: (v) => v.toFixed(1),
  ms: (v) => (v === null || v === undefined ? "-" : v.toFixed(1)),
  pct: (v) => `${(v * 100).toFixed(1)}%`,
  share: (v) => `${Math.round(v * 100)}%`,
  // the digits that matter: $0, $0.00042, $1.25
  usd: (v) => (v === 0 ? "$0" : v >= 0.01 ? `$${v.toFixed(2)}` : `$${Number(v.toPrecision(2))}`),
};

function drawTable(edges) {
  const body = $("edges").querySelector("tbody");
  body.replaceChildren();
  for (const e of edges) {
    const row = el("tr", {
      "data-from": e.source_cluster,
      "data-service": e.destination_service,
      "data-cluster": e.destination_cluster,
      "data-rps": String(e.rps),
      "data-share": String(e.share),
      "data-error-share": String(e.errorShare),
      "data-usd-per-hour": String(e.usdPerHour),
    });
    const cells = [
      [e.source_cluster], [e.destination_service], [e.destination_cluster],
      [fmt.share(e.share), "num"], [fmt.rps(e.rps), "num"], [fmt.ms(e.p50Ms), "num"],
      [fmt.ms(e.p99Ms), "num"], [fmt.pct(e.errorShare), "num"], [e.pathClasses.join("+")],
      [fmt.usd(e.usdPerHour), "num"],
    ];
    for (const [text, cls] of cells) row.append(el("td", cls ? { class: cls } : {}, text));
    body.append(row);
  }
}

// Cluster boxes: at most BOX_MAX_W wide; a line longer than its box is cut with "…" and
// keeps its whole text in a <title> (shown on hover).
const BOX_MAX_W = 380, BOX_PAD = 10, LINE_H = 17, MAX_LOCAL = 3;

function fitText(node, text, width) {
  node.textContent = text;
  if (node.getComputedTextLength() <= width) return;
  let lo = 0, hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    node.textContent = `${text.slice(0, mid)}…`;
    if (node.getComputedTextLength() <= width) lo = mid; else hi = mid - 1;
  }
  node.textContent = `${text.slice(0, lo)}…`;
  node.append(el("title", {}, text, SVG_NS));
}

function clusterLines(c, edges) {
  const local = edges.filter((e) => e.source_cluster === c.name && e.destination_cluster === c.name);
  const lines = [
    [c.name, "name"],
    [`${c.locality} · ${c.state}`, "muted"],
    [`gateway ${c.gateway || "-"}`, "muted"],
    [`exports ${c.exports.join(", ") || "-"}`, ""],
  ];
  if (!local.length) lines.push(["local: -", ""]);
  local.slice(0, MAX_LOCAL).forEach((e) => lines.push(
    [`local: ${e.destination_service} ${fmt.rps(e.rps)} req/s (${fmt.share(e.share)}) · p99 ${fmt.ms(e.p99Ms)} ms`, ""]));
  if (local.length > MAX_LOCAL) lines.push([`local: ${local.length - MAX_LOCAL} more (table below)`, "muted"]);
  return lines;
}

function clusterBox(svg, c, edges) {
  // drawn at the origin and measured, then moved into place by layout()
  const g = el("g", { class: `cluster${c.state === "Ready" ? "" : " unready"}`, "data-cluster": c.name }, null, SVG_NS);
  const rect = el("rect", { rx: "8" }, null, SVG_NS);
  g.append(rect);
  svg.append(g);
  const lines = clusterLines(c, edges);
  const texts = lines.map(([text, cls], i) => {
    const t = el("text", { x: String(BOX_PAD), y: String(BOX_PAD + 13 + i * LINE_H), ...(cls ? { class: cls } : {}) }, text, SVG_NS);
    g.append(t);
    return t;
  });
  const W = Math.min(BOX_MAX_W, Math.max(...texts.map((t) => t.getComputedTextLength())) + 2 * BOX_PAD);
  texts.forEach((t, i) => fitText(t, lines[i][0], W - 2 * BOX_PAD));
  const H = lines.length * LINE_H + 2 * BOX_PAD - 2;
  rect.setAttribute("width", String(W));
  rect.setAttribute("height", String(H));
  return { g, W, H };
}

function layout(boxes, width, height) {
  // clusters on an ellipse in name order (stable between refreshes), stretched to fill the
  // drawing so that every box stays inside it
  const n = boxes.length;
  const raw = boxes.map((_, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
    return n > 1 ? { x: Math.cos(a), y: Math.sin(a) } : { x: 0, y: 0 };
  });
  const span = (k) => [Math.min(...raw.map((p) => p[k])), Math.max(...raw.map((p) => p[k]))];
  const [x0, x1] = span("x"), [y0, y1] = span("y");
  const maxW = Math.max(...boxes.map((b) => b.W)), maxH = Math.max(...boxes.map((b) => b.H));
  const fit = (v, lo, hi, size, box) => (hi > lo ? box / 2 + 4 + ((v - lo) / (hi - lo)) * (size - box - 8) : size / 2);
  return raw.map((p) => ({ x: fit(p.x, x0, x1, width, maxW), y: fit(p.y, y0, y1, height, maxH) }));
}

function drawTopology(clusters, edges) {
  const svg = $("topology");
  const width = svg.clientWidth || 1000, height = svg.clientHeight || 360;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const defs = el("defs", {}, null, SVG_NS);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" }, null, SVG_NS);
  marker.append(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#2c6fbb" }, null, SVG_NS));
  defs.append(marker);
  svg.append(defs);
  const edgeLayer = el("g", {}, null, SVG_NS);
  svg.append(edgeLayer);
  const sorted = [...clusters].sort((a, b) => a.name.localeCompare(b.name));
  const boxes = sorted.map((c) => clusterBox(svg, c, edges));
  const centres = layout(boxes, width, height);
  const pos = {};
  sorted.forEach((c, i) => {
    const { g, W, H } = boxes[i], p = centres[i];
    g.setAttribute("transform", `translate(${p.x - W / 2} ${p.y - H / 2})`);
    pos[c.name] = { ...p, W, H };
  });
  const cross = edges.filter((e) => e.source_cluster !== e.destination_cluster && pos[e.source_cluster] && pos[e.destination_cluster]);
  cross.forEach((e) => {
    const a = pos[e.source_cluster], b = pos[e.destination_cluster];
    // leave and enter at the boxes' borders; bend so that A->B and B->A do not overlap
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const cut = (box) => Math.min(box.W / 2 / Math.max(Math.abs(dx / len), 1e-6), box.H / 2 / Math.max(Math.abs(dy / len), 1e-6)) + 4;
    const sx = a.x + (dx / len) * cut(a), sy = a.y + (dy / len) * cut(a);
    const ex = b.x - (dx / len) * cut(b), ey = b.y - (dy / len) * cut(b);
    const bend = Math.min(40, len / 6);
    const mx = (sx + ex) / 2 - (dy / len) * bend, my = (sy + ey) / 2 + (dx / len) * bend;
    // the curve's midpoint (t = 0.5 of the quadratic), where its label goes
    const lx = 0.25 * sx + 0.5 * mx + 0.25 * ex, ly = 0.25 * sy + 0.5 * my + 0.25 * ey;
    const g = el("g", { class: `edge${e.errorShare > 0.01 ? " errors" : ""}`,
      "data-from": e.source_cluster, "data-cluster": e.destination_cluster }, null, SVG_NS);
    g.append(el("path", { d: `M ${sx} ${sy} Q ${mx} ${my} ${ex} ${ey}` }, null, SVG_NS));
    // the label on the outer side of the bend, clear of the curve
    const above = my < (sy + ey) / 2;
    const text = el("text", { x: String(lx), y: String(ly + (above ? -22 : 16)), "text-anchor": "middle" }, null, SVG_NS);
    const lines = [
      `${e.destination_service} ${fmt.rps(e.rps)} req/s (${fmt.share(e.share)})`,
      `p99 ${fmt.ms(e.p99Ms)} ms · ${fmt.pct(e.errorShare)} err · ${fmt.usd(e.usdPerHour)}/h`,
    ];
    lines.forEach((line, k) => text.append(el("tspan", { x: String(lx), dy: k ? "15" : "0" }, line, SVG_NS)));
    g.append(text);
    edgeLayer.append(g);
  });
}

// Egress per UTC day: spent, locality failover and round robin side by side, the last
// COST_DAYS days of GET /v1/cost/report; each day a <g class="day"> with its figures in data-*.
function drawCost(days) {
  const svg = $("cost-chart");
  const width = svg.clientWidth || 1000, height = svg.clientHeight || 180;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  if (!days.length) {
    svg.append(el("text", { x: "8", y: "20" }, "no traffic in the ledger yet", SVG_NS));
    return;
  }
  const kinds = [["usd", "spent"], ["localityFailoverUsd", "failover"], ["roundRobinUsd", "spread"]];
  const top = Math.max(...days.flatMap((d) => kinds.map(([k]) => d[k])), 1e-12);
  const slot = Math.min(160, width / days.length), bar = Math.min(36, (slot - 24) / 3);
  const base = height - 22, room = base - 18;
  days.forEach((d, i) => {
    const g = el("g", { class: "day", "data-day": d.day, "data-usd": String(d.usd),
      "data-locality-failover-usd": String(d.localityFailoverUsd),
      "data-round-robin-usd": String(d.roundRobinUsd) }, null, SVG_NS);
    const x0 = i * slot + (slot - 3 * bar) / 2;
    kinds.forEach(([key, cls], k) => {
      const h = Math.max(1, (d[key] / top) * room), x = x0 + k * bar;
      g.append(el("rect", { class: cls, x: String(x + 1), y: String(base - h),
        width: String(bar - 2), height: String(h) }, null, SVG_NS));
      // a day's dollars to the cent (the exact figure is in data-usd and the report)
      const label = d[key] === 0 ? "$0" : d[key] < 0.01 ? "<$0.01" : fmt.usd(d[key]);
      if (k === 0) g.append(el("text", { x: String(x), y: String(base - h - 4) }, label, SVG_NS));
    });
    g.append(el("text", { class: "day", x: String(x0), y: String(height - 6) }, d.day.slice(5), SVG_NS));
    svg.append(g);
  });
}

let costDue = 0;

async function refreshCost(token) {
  if (Date.now() < costDue) return;
  costDue = Date.now() + COST_REFRESH_MS;
  const report = await api(`/v1/cost/report?since=${COST_DAYS}d`, token);
  drawCost(report.days.slice(-COST_DAYS));
}

async function refresh(token) {
  try {
    const [clusters, traffic] = await Promise.all([
      api("/v1/clusters", token),
      api(`/v1/traffic?window=${WINDOW_S}`, token),
    ]);
    const edges = traffic.edges;
    const rps = edges.reduce((s, e) => s + e.rps, 0);
    const usd = edges.reduce((s, e) => s + e.usdPerHour, 0);
    $("total-rps").textContent = fmt.rps(rps);
    $("total-rps").dataset.value = String(rps);
    $("total-usd").textContent = fmt.usd(usd);
    $("total-usd").dataset.value = String(usd);
    $("window").textContent = `${traffic.windowS.toFixed(0)} s`;
    $("updated").textContent = new Date().toLocaleTimeString();
    drawTopology(clusters.clusters, edges);
    drawTable(edges);
    await refreshCost(token);
    $("prices").textContent = traffic.priceTables.map((t) => `${t.cloud}: ${t.source} (read ${t.readOn})`).join("; ") || "-";
    $("error").hidden = true;
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("error").textContent = String(err.message || err);
    $("error").hidden = false;
    if (!sessionStorage.getItem("meshfed-token")) $("login").hidden = false;
  }
}

async function start() {
  fetch("/healthz").then((r) => r.json()).then((h) => { $("trust-domain").textContent = h.trustDomain; });
  const token = takeToken();
  if (!token) {
    $("login").hidden = false;
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("meshfed-token", $("token").value.trim());
      location.reload();
    });
    return;
  }
  await refresh(token);
  setInterval(() => refresh(token), REFRESH_MS);
}

start();
