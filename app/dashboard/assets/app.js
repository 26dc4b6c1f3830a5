// The Kiln dashboard page: renders the summary kilnd's dashboard server
// builds (GET /api/summary), then every new one it pushes over the
// websocket /api/live when a block commits. No external code.
"use strict";

const COLORS = ["#d9480f", "#1c7ed6", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#e64980", "#5c940d", "#495057", "#7048e8"];
const $ = (id) => document.getElementById(id);

function fmtInt(n) {
  if (n === null || n === undefined || n === "") return "–";
  return BigInt(n).toLocaleString("en-US");
}

// ukiln (decimal text) as KILN with up to 2 decimals.
function fmtKiln(ukiln) {
  if (ukiln === null || ukiln === undefined) return "–";
  const v = BigInt(ukiln);
  const whole = v / 1000000n;
  const cents = (v % 1000000n) / 10000n;
  return `${whole.toLocaleString("en-US")}.${cents.toString().padStart(2, "0")} KILN`;
}

function shortHost(h) {
  return h.length > 20 ? `${h.slice(0, 12)}…${h.slice(-6)}` : h;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function blockSeconds(times) {
  if (!times || times.length < 2) return null;
  const [h0, t0] = times[0];
  const [h1, t1] = times[times.length - 1];
  const dt = (Date.parse(t1) - Date.parse(t0)) / 1000;
  return h1 > h0 && dt > 0 ? dt / (h1 - h0) : null;
}

function render(s) {
  window.kilnSummary = s;
  // The height the state on the page was read at (the latest block's
  // height moves on between full reads).
  document.body.dataset.height = s.state_height ?? s.height ?? "";
  $("node").textContent = s.node || "the node's RPC";
  const err = $("error");
  if (!s.ok) {
    err.hidden = false;
    err.textContent = `Cannot read the chain from ${s.node}: ${s.error}`;
    return;
  }
  err.hidden = true;
  $("chain").textContent = `${s.chain_id} · ${s.moniker}${s.catching_up ? " · catching up" : ""}`;
  $("height").textContent = fmtInt(s.height);
  const bs = blockSeconds(s.block_times);
  $("block-time").textContent = `${new Date(s.time).toLocaleTimeString()}${bs ? ` · ${bs.toFixed(2)} s per block` : ""}`;

  const e = s.epoch;
  $("epoch").textContent = fmtInt(e.epoch);
  $("stage").textContent = `${e.stage} · ${e.blocks_to_next_stage} blocks to the next stage`;
  const span = Math.max(1, e.next_stage_height - e.stage_start);
  const done = Math.min(1, Math.max(0, (e.height - e.stage_start) / span));
  $("stage-progress").style.width = `${(done * 100).toFixed(1)}%`;

  const weighted = s.hosts.filter((h) => h.weight > 0);
  const total = weighted.reduce((a, h) => a + h.weight, 0);
  $("host-count").textContent = fmtInt(weighted.length);
  $("total-weight").textContent = `total weight ${fmtInt(total)} · ${s.hosts.length} listed`;

  const prices = s.prices || [];
  $("price").textContent = prices.length ? `${fmtInt(prices[0].price_pkiln)} pkiln` : "–";
  const served = (s.weight_history.inferences_served || []);
  $("traffic").textContent = prices.length
    ? `${prices[0].model} per token · ${fmtInt(served.length ? served[served.length - 1] : 0)} inferences last epoch`
    : "no model registered";

  const tbody = $("hosts").querySelector("tbody");
  tbody.replaceChildren();
  for (const h of s.hosts) {
    const tr = document.createElement("tr");
    tr.dataset.host = h.host;
    cell(tr, shortHost(h.host), "host").title = h.host;
    cell(tr, fmtInt(h.weight), "num weight").dataset.weight = h.weight;
    cell(tr, `${(h.share_bps / 100).toFixed(2)}%`, "num");
    cell(tr, fmtInt(h.consensus_power), "num");
    cell(tr, h.reputation === null ? "–" : `${h.reputation}`, "num");
    cell(tr, fmtKiln(h.reward), "num");
    cell(tr, h.inferences_served === null ? "–" : `${fmtInt(h.inferences_served)} (${fmtInt(h.lifetime_inferences)} in all)`, "num");
    tbody.appendChild(tr);
  }

  $("sprint-epoch").textContent = s.settled_epoch ? `(epoch ${s.settled_epoch})` : "(none settled yet)";
  const sb = $("sprints").querySelector("tbody");
  sb.replaceChildren();
  for (const h of s.hosts.filter((h) => h.accepted !== null)) {
    const tr = document.createElement("tr");
    cell(tr, shortHost(h.host), "host").title = h.host;
    cell(tr, h.accepted ? "accepted" : (h.jailed ? "jailed" : "not accepted"), h.accepted ? "accepted" : "rejected");
    cell(tr, fmtInt(h.raw_weight), "num");
    cell(tr, fmtInt(h.effective_weight), "num");
    sb.appendChild(tr);
  }

  const pb = $("proposals").querySelector("tbody");
  pb.replaceChildren();
  for (const p of s.proposals) {
    const tr = document.createElement("tr");
    cell(tr, `${p.id}`, "num");
    cell(tr, p.title);
    cell(tr, p.status.replace("_", " "));
    cell(tr, fmtInt(p.status === "voting_period" ? p.voting_end_height : p.deposit_end_height), "num");
    pb.appendChild(tr);
  }
  $("no-proposals").hidden = s.proposals.length > 0;

  const wh = s.weight_history;
  plot($("weight-plot"), $("weight-legend"),
    Object.entries(wh.hosts).map(([host, ws]) => ({ name: shortHost(host), points: ws.map((w, i) => [wh.epochs[i], w]) })),
    "epoch", "weight");
  const byModel = {};
  for (const p of s.price_history) (byModel[p.model] ||= []).push([p.height, p.price_pkiln]);
  plot($("price-plot"), $("price-legend"),
    Object.entries(byModel).map(([model, points]) => ({ name: model, points })),
    "height", "pkiln/token");
}

// A line plot of `series` ([{name, points: [[x, y]…]}]) into an SVG.
function plot(svg, legend, series, xLabel, yLabel) {
  const W = 600, H = 240, L = 48, R = 12, T = 12, B = 28;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  legend.replaceChildren();
  const all = series.flatMap((s) => s.points);
  const el = (name, attrs, text) => {
    const n = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.appendChild(n);
    return n;
  };
  if (all.length === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet");
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const y1 = Math.max(1, ...ys) * 1.1;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => H - B - (y / y1) * (H - T - B);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#ccc" });
  el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#ccc" });
  el("text", { x: L - 4, y: Y(0) + 4, "text-anchor": "end" }, "0");
  el("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, Math.round(y1).toLocaleString("en-US"));
  el("text", { x: L, y: H - 8 }, `${xLabel} ${Math.round(x0)}`);
  el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, `${Math.round(x1)}`);
  el("text", { x: L + 4, y: T + 8 }, yLabel);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
    el("path", { d, fill: "none", stroke: color, "stroke-width": 2 });
    for (const p of s.points.length <= 30 ? s.points : []) {
      el("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, fill: color });
    }
    const tag = document.createElement("span");
    tag.style.setProperty("--c", color);
    tag.textContent = s.name;
    legend.appendChild(tag);
  });
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  ws.onopen = () => { $("live").textContent = "live"; $("live").className = "badge on"; };
  ws.onmessage = (m) => render(JSON.parse(m.data));
  ws.onclose = () => {
    $("live").textContent = "reconnecting"; $("live").className = "badge off";
    setTimeout(connect, 2000);
  };
}

fetch("/api/summary").then((r) => r.json()).then(render).catch(() => {}).finally(connect);
