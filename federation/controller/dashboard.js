// meshfed dashboard: reads the controller's API (GET /v1/clusters, GET /v1/traffic) with the
// admin token every REFRESH_MS and redraws; it never writes. The token comes from the link
// `meshfed dashboard` prints (#token=..., a fragment: never sent to the server, removed from
// the address bar at once) or from the form, and is kept in sessionStorage for this tab only.
"use strict";

const REFRESH_MS = 2000;
const WINDOW_S = 10;
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
  usd: (v) => `$${v.toFixed(8)}`,
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

function layout(names) {
  // clusters on an ellipse, in name order (stable between refreshes)
  const pos = {};
  const n = names.length;
  names.forEach((name, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
    pos[name] = { x: 500 + (n > 1 ? 340 * Math.cos(a) : 0), y: 280 + (n > 1 ? 190 * Math.sin(a) : 0) };
  });
  return pos;
}

function drawTopology(clusters, edges) {
  const svg = $("topology");
  svg.replaceChildren();
  const defs = el("defs", {}, null, SVG_NS);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" }, null, SVG_NS);
  marker.append(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#2c6fbb" }, null, SVG_NS));
  defs.append(marker);
  svg.append(defs);
  const names = clusters.map((c) => c.name).sort();
  const pos = layout(names);
  const W = 230, H = 110;
  const cross = edges.filter((e) => e.source_cluster !== e.destination_cluster && pos[e.source_cluster] && pos[e.destination_cluster]);
  cross.forEach((e) => {
    const a = pos[e.source_cluster], b = pos[e.destination_cluster];
    // leave and enter at the boxes' borders; bend so that A->B and B->A do not overlap
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const cut = Math.min(W / 2 / Math.max(Math.abs(dx / len), 1e-6), H / 2 / Math.max(Math.abs(dy / len), 1e-6)) + 4;
    const sx = a.x + (dx / len) * cut, sy = a.y + (dy / len) * cut;
    const ex = b.x - (dx / len) * cut, ey = b.y - (dy / len) * cut;
    const mx = (sx + ex) / 2 - (dy / len) * 60, my = (sy + ey) / 2 + (dx / len) * 60;
    // the curve's midpoint (t = 0.5 of the quadratic), where its label goes
    const lx = 0.25 * sx + 0.5 * mx + 0.25 * ex, ly = 0.25 * sy + 0.5 * my + 0.25 * ey;
    const g = el("g", { class: `edge${e.errorShare > 0.01 ? " errors" : ""}`,
      "data-from": e.source_cluster, "data-cluster": e.destination_cluster }, null, SVG_NS);
    g.append(el("path", { d: `M ${sx} ${sy} Q ${mx} ${my} ${ex} ${ey}` }, null, SVG_NS));
    const above = my < (sy + ey) / 2;
    const y0 = ly + (above ? -26 : 18);
    const text = el("text", { x: String(lx), y: String(y0), "text-anchor": "middle" }, null, SVG_NS);
    const lines = [
      `${e.destination_service} ${fmt.rps(e.rps)} req/s (${fmt.share(e.share)})`,
      `p99 ${fmt.ms(e.p99Ms)} ms · ${fmt.pct(e.errorShare)} err · ${fmt.usd(e.usdPerHour)}/h`,
    ];
    lines.forEach((line, k) => text.append(el("tspan", { x: String(lx), dy: k ? "15" : "0" }, line, SVG_NS)));
    g.append(text);
    svg.append(g);
  });
  for (const c of clusters) {
    const p = pos[c.name];
    const g = el("g", { class: `cluster${c.state === "Ready" ? "" : " unready"}`, "data-cluster": c.name,
      transform: `translate(${p.x - W / 2} ${p.y - H / 2})` }, null, SVG_NS);
    g.append(el("rect", { width: String(W), height: String(H) }, null, SVG_NS));
    g.append(el("text", { x: "10", y: "20", class: "name" }, c.name, SVG_NS));
    g.append(el("text", { x: "10", y: "38", class: "muted" }, `${c.locality} · ${c.state}`, SVG_NS));
    g.append(el("text", { x: "10", y: "55", class: "muted" }, `gateway ${c.gateway || "-"}`, SVG_NS));
    g.append(el("text", { x: "10", y: "72" }, `exports ${c.exports.join(", ") || "-"}`, SVG_NS));
    const local = edges.filter((e) => e.source_cluster === c.name && e.destination_cluster === c.name);
    const text = local.map((e) => `${e.destination_service} ${fmt.rps(e.rps)} req/s p99 ${fmt.ms(e.p99Ms)} ms`).join("; ");
    g.append(el("text", { x: "10", y: "92" }, local.length ? `local: ${text}` : "local: -", SVG_NS));
    svg.append(g);
  }
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
    $("prices").replaceChildren(...traffic.priceTables.map((t) => el("li", {}, `${t.cloud}: ${t.source} (read ${t.readOn})`)));
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
