// The war room: polls /v1/warroom every second and follows the hottest SKUs' stock over
// /v1/stock/live. No library: the charts are SVG paths drawn here.
"use strict";

const POLL_MS = 1000;
const POINTS = 120;
const TOKEN_KEY = "saleday.operatorToken";
const series = { orders: [], commands: [], p50: [], p99: [] };
const stock = new Map();      // sku -> {row, last message, history [[ms, available]]}
const pushDelays = [];        // ms from commit to arrival here, latest 500
let token = null;
let socket = null;
let followed = new Set();
let wanted = [];
let lastSubscribe = 0;
let retryMs = 500;

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v))
  ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (v, digits = 1) => (v === null || v === undefined) ? "–" : `${fmt(v * 100, digits)} %`;

function readToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function setLink(text, kind) {
  const el = $("link");
  el.textContent = text;
  el.className = `pill ${kind}`;
}

// -- the summary ---------------------------------------------------------------------------

async function poll() {
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const r = await fetch("/v1/warroom", { headers, cache: "no-store" });
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      $("login").hidden = false;
      $("wall").hidden = true;
      setLink("operator token needed", "bad");
      return;               // the form starts polling again
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    setLink(socket && socket.readyState === WebSocket.OPEN ? "live" : "polling", "ok");
  } catch (err) {
    setLink("server unreachable", "bad");
  }
  setTimeout(poll, POLL_MS);
}

function render(d) {
  $("clock").textContent = new Date(d.server_time_ms).toLocaleTimeString("en-GB");
  const r = d.rates;
  $("orders-per-s").textContent = fmt(r.orders_per_s, 1);
  $("commands-per-s").textContent = fmt(r.commands_per_s, 1);
  $("busy-per-s").textContent = fmt(r.busy_per_s, 1);
  $("busy-ratio").textContent = pct(r.busy_ratio);
  $("limited-per-s").textContent = fmt(r.rate_limited_per_s, 1);
  $("limited-ratio").textContent = pct(r.rate_limited_ratio);
  $("p50").textContent = d.latency.p50_ms === null ? "–" : `${fmt(d.latency.p50_ms, 1)} ms`;
  $("p99").textContent = d.latency.p99_ms === null ? "–" : `${fmt(d.latency.p99_ms, 1)} ms`;
  $("teams-completed").textContent = fmt(d.red_packets.completed);
  $("teams-other").textContent = `${fmt(d.red_packets.created - d.red_packets.completed)} / ${fmt(d.red_packets.expired)}`;
  $("k-factor").textContent = fmt(d.referrals.k_factor, 3);
  $("invited").textContent = fmt(d.referrals.invited);
  $("orders-placed").textContent = fmt(d.orders.orders_placed);
  $("orders-paid").textContent = fmt(d.orders.orders_paid);
  renderTargets(d.targets);
  push(series.orders, r.orders_per_s);
  push(series.commands, r.commands_per_s);
  push(series.p50, d.latency.p50_ms);
  push(series.p99, d.latency.p99_ms);
  drawRates();
  drawLatency();
  renderSkus(d.skus);
}

function push(list, value) {
  list.push(value);
  if (list.length > POINTS) list.shift();
}

function renderTargets(targets) {
  const ul = $("targets");
  for (const t of targets) {
    let li = ul.querySelector(`[data-target="${t.name}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.target = t.name;
      li.innerHTML = '<div class="name"></div><div class="value"></div><div class="goal"></div><div class="verdict"></div>';
      ul.appendChild(li);
    }
    const state = t.ok === null ? "neutral" : (t.ok ? "ok" : "bad");
    li.className = `tile ${state}`;
    li.querySelector(".name").textContent = t.label;
    li.querySelector(".value").textContent = showTarget(t.value, t.unit);
    const op = t.op === "<=" ? (t.target === 0 ? "=" : "<") : ">";
    li.querySelector(".goal").textContent = `target ${op} ${showTarget(t.target, t.unit)}`;
    li.querySelector(".verdict").textContent = t.ok === null ? "NO DATA" : (t.ok ? "MET" : "MISSED");
  }
}

function showTarget(v, unit) {
  if (v === null || v === undefined) return "–";
  if (unit === "ratio") return pct(v, v >= 0.99 ? 2 : 1);
  if (unit === "ms") return `${fmt(v, 0)} ms`;
  return fmt(v);
}

// -- charts --------------------------------------------------------------------------------

const W = 600, H = 200, PAD = 28;

function svgEl(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function pathOf(values, y) {
  let d = "";
  let pen = "M";
  values.forEach((v, i) => {
    if (v === null || v === undefined) { pen = "M"; return; }
    const x = PAD + (W - PAD - 4) * (i + POINTS - values.length) / (POINTS - 1);
    d += `${pen}${x.toFixed(1)},${y(v).toFixed(1)} `;
    pen = "L";
  });
  return d.trim();
}

function redraw(svg, gridLines, paths) {
  for (const el of [...svg.querySelectorAll("g")]) el.remove();
  const g = svgEl("g", {});
  for (const [y, label, cls] of gridLines) {
    g.appendChild(svgEl("line", { x1: PAD, x2: W - 4, y1: y, y2: y, class: cls || "grid" }));
    const text = svgEl("text", { x: 2, y: y + 4, class: "axis" });
    text.textContent = label;
    g.appendChild(text);
  }
  for (const [d, cls] of paths) {
    if (d) g.appendChild(svgEl("path", { d, class: cls }));
  }
  svg.appendChild(g);
}

function niceMax(values) {
  const top = Math.max(1, ...values.filter((v) => v !== null && v !== undefined));
  const step = Math.pow(10, Math.floor(Math.log10(top)));
  return Math.ceil(top / step) * step;
}

function drawRates() {
  const max = niceMax([...series.orders, ...series.commands]);
  const y = (v) => H - 8 - (H - 16) * Math.min(v, max) / max;
  redraw($("chart-rates"), [[y(0), "0"], [y(max / 2), fmt(max / 2)], [y(max), fmt(max)]],
    [[pathOf(series.commands, y), "commands"], [pathOf(series.orders, y), "orders"]]);
}

function drawLatency() {
  const lo = Math.log10(0.5), hi = Math.log10(5000);
  const y = (v) => H - 8 - (H - 16) * (Math.log10(Math.max(0.5, Math.min(v, 5000))) - lo) / (hi - lo);
  redraw($("chart-latency"), [[y(1), "1"], [y(10), "10"], [y(100), "100"], [y(500), "500", "limit"], [y(5000), "5 s"]],
    [[pathOf(series.p50, y), "p50"], [pathOf(series.p99, y), "p99"]]);
}

// -- stock ---------------------------------------------------------------------------------

function renderSkus(rows) {
  const tbody = $("skus");
  if (!rows.length) return;
  const placeholder = tbody.querySelector("td[colspan]");
  if (placeholder) placeholder.parentElement.remove();
  wanted = rows.map((r) => r.sku);
  for (const r of rows) {
    let s = stock.get(r.sku);
    if (!s) {
      const tr = document.createElement("tr");
      tr.dataset.sku = r.sku;
      tr.innerHTML = '<th scope="row" class="sku"></th><td class="available"></td><td class="reserved"></td>' +
        '<td class="sold"></td><td class="left"><div class="bar"><span></span></div></td><td class="sellout"></td>';
      tr.querySelector(".sku").textContent = r.sku;
      s = { row: tr, msg: null, history: [], summary: r };
      stock.set(r.sku, s);
    }
    s.summary = r;
    tbody.appendChild(s.row);       // keeps the order of the summary (hottest first)
    if (!s.msg || (r.version !== null && r.version > s.msg.version)) {
      showStock(s, { sku: r.sku, stocked: r.stocked, available: r.available, reserved: r.reserved,
        sold: r.sold, version: r.version ?? 0 });
    } else {
      showSellOut(s);
    }
  }
  for (const [sku, s] of stock) {
    if (!wanted.includes(sku)) { s.row.remove(); stock.delete(sku); }
  }
  follow();
}

function showStock(s, m) {
  const cells = { available: m.available, reserved: m.reserved, sold: m.sold };
  for (const [cls, v] of Object.entries(cells)) {
    const td = s.row.querySelector(`.${cls}`);
    const text = fmt(v);
    if (td.textContent !== text) {
      td.textContent = text;
      td.classList.remove("flash");
      void td.offsetWidth;
      td.classList.add("flash");
    }
  }
  const left = m.stocked ? m.available / m.stocked : 0;
  const bar = s.row.querySelector(".bar span");
  bar.style.width = `${(100 * left).toFixed(1)}%`;
  bar.className = m.available <= 0 ? "out" : (left < 0.2 ? "low" : "");
  s.row.querySelector(".bar").setAttribute("aria-label", `${fmt(100 * left)} % left`);
  s.msg = m;
  const now = Date.now();
  s.history.push([now, m.available]);
  while (s.history.length > 2 && now - s.history[0][0] > 30000) s.history.shift();
  showSellOut(s);
}

function showSellOut(s) {
  const td = s.row.querySelector(".sellout");
  const m = s.msg, r = s.summary;
  let text = "–";
  if (r.sold_out_after_s !== null && r.sold_out_after_s !== undefined) {
    text = `sold out in ${fmt(r.sold_out_after_s, 1)} s`;
  } else if (m && m.available <= 0) {
    text = "sold out";
  } else if (s.history.length > 1) {
    const [t0, a0] = s.history[0];
    const [t1, a1] = s.history[s.history.length - 1];
    const perS = (a0 - a1) / Math.max(1, (t1 - t0) / 1000);
    if (perS > 0) text = `≈ ${fmt(a1 / perS, 0)} s left`;
  }
  td.textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/v1/stock/live`);
  followed = new Set();
  socket.addEventListener("open", () => { retryMs = 500; follow(); });
  socket.addEventListener("message", (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type !== "stock") return;
    if (!m.snapshot) {
      pushDelays.push(Date.now() - m.committed_at);
      if (pushDelays.length > 500) pushDelays.shift();
      const sorted = [...pushDelays].sort((a, b) => a - b);
      $("push-p99").textContent = `${fmt(sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))])} ms`;
    }
    const s = stock.get(m.sku);
    if (s && (!s.msg || m.version >= s.msg.version)) showStock(s, m);
  });
  socket.addEventListener("close", () => {
    socket = null;
    setTimeout(connect, retryMs);
    retryMs = Math.min(10000, retryMs * 2);
  });
}

function follow() {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const add = wanted.filter((s) => !followed.has(s));
  const drop = [...followed].filter((s) => !wanted.includes(s));
  if (!add.length && !drop.length) return;
  if (Date.now() - lastSubscribe < 1000) return;   // the server allows a few a second
  lastSubscribe = Date.now();
  socket.send(JSON.stringify({ subscribe: add, unsubscribe: drop }));
  followed = new Set(wanted);
}

// -- start ---------------------------------------------------------------------------------

function start() {
  token = readToken();
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login").hidden = true;
    $("wall").hidden = false;
    poll();
  });
  drawRates();
  drawLatency();
  connect();
  poll();
}

document.addEventListener("DOMContentLoaded", start);
