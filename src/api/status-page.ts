/**
 * The status page served at `/` on the read-only listener: one self-contained HTML
 * document (inline style and script, nothing fetched but this origin's /status/mesh and
 * /flows), drawing the mesh in SVG with text labels, so a screen reader or a test reads
 * what a sighted user sees: hosts, their state in words, edges with data path,
 * encryption and RTT, networks and containers, the health matrix and live counters.
 * Everything from the daemon is put in the page with textContent, never as markup.
 */
import { createHash } from 'node:crypto';

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #1a1a1a; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
#live { color: #555; }
#live.error { color: #b00020; font-weight: bold; }
svg { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.up { color: #1b5e20; font-weight: bold; }
.down { color: #b00020; font-weight: bold; }
.stale { color: #8a6d00; font-weight: bold; }
.legend span { margin-right: 1.2em; }
.sw { display: inline-block; width: 2em; height: 0; vertical-align: middle; margin-right: .3em; border-top: 3px solid; }
`;

const SCRIPT = `
'use strict';
const NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function table(headers, rows) {
  const t = el('table');
  const tr = el('tr');
  for (const h of headers) tr.appendChild(el('th', { scope: 'col' }, h));
  t.appendChild(tr);
  for (const r of rows) {
    const row = el('tr');
    for (const c of r) {
      if (c && typeof c === 'object') row.appendChild(el('td', { class: c.cls }, c.text));
      else row.appendChild(el('td', {}, String(c)));
    }
    t.appendChild(row);
  }
  return t;
}
function label(h) { return h.nickname || h.name; }
function ms(v) { return v === null || v === undefined ? '-' : (v < 1 ? v.toFixed(2) : v.toFixed(1)) + ' ms'; }
function bytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(2) + ' MB';
  if (n >= 1e3) return (n / 1e3).toFixed(1) + ' kB';
  return n + ' B';
}
function edgeStyle(e) {
  if (!e.up) return { stroke: '#b00020', dash: '2 4' };
  const stroke = e.datapath === 'fastdp' ? '#1b5e20' : '#0d47a1';
  return { stroke, dash: e.encrypted ? '' : '8 4' };
}
function drawMesh(m) {
  const svg = $('mesh');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 760, H = 420, cx = W / 2, cy = H / 2, r = Math.min(W, H) / 2 - 70;
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  svg.appendChild(sv('title', {}, 'Mesh of ' + m.hosts.length + ' hosts as seen from ' + label(m.self)));
  const pos = new Map();
  m.hosts.forEach((h, i) => {
    const a = (2 * Math.PI * i) / m.hosts.length - Math.PI / 2;
    pos.set(h.name, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
  });
  const names = new Map(m.hosts.map((h) => [h.name, label(h)]));
  const edges = sv('g', { id: 'edges' });
  for (const e of m.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const st = edgeStyle(e);
    const text = names.get(e.from) + ' - ' + names.get(e.to) + ': ' +
      (e.up ? 'up, ' + e.datapath + ', ' + (e.encrypted ? 'encrypted' : 'clear') + ', rtt ' + ms(e.rttMs) : 'down' + (e.reason ? ': ' + e.reason : ''));
    const g = sv('g', { class: 'edge', 'data-from': names.get(e.from), 'data-to': names.get(e.to), 'data-state': e.up ? 'up' : 'down', 'data-datapath': e.datapath, 'data-encrypted': String(e.encrypted) });
    g.appendChild(sv('title', {}, text));
    const line = sv('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: st.stroke, 'stroke-width': 3 });
    if (st.dash) line.setAttribute('stroke-dasharray', st.dash);
    g.appendChild(line);
    // Labels at 40 % from the lower-named end: crossing diagonals do not share a midpoint.
    const mx = a.x + (b.x - a.x) * 0.4, my = a.y + (b.y - a.y) * 0.4;
    g.appendChild(sv('text', { x: mx, y: my - 4, 'text-anchor': 'middle', 'font-size': 11, fill: st.stroke },
      e.up ? e.datapath + (e.encrypted ? ' encrypted ' : ' clear ') + ms(e.rttMs) : 'down'));
    edges.appendChild(g);
  }
  svg.appendChild(edges);
  const nodes = sv('g', { id: 'hosts' });
  for (const h of m.hosts) {
    const p = pos.get(h.name);
    const state = h.state === 'up' ? (h.stale && !h.self ? 'up, report stale' : 'up') : 'down';
    const g = sv('g', { class: 'host', 'data-name': h.name, 'data-state': h.state });
    g.appendChild(sv('title', {}, label(h) + ' (' + h.name + '): ' + state + (h.reason ? ': ' + h.reason : '')));
    g.appendChild(sv('circle', { cx: p.x, cy: p.y, r: 26, fill: h.state === 'up' ? '#e8f5e9' : '#ffebee',
      stroke: h.state === 'up' ? '#1b5e20' : '#b00020', 'stroke-width': h.self ? 4 : 2 }));
    g.appendChild(sv('text', { x: p.x, y: p.y - 32, 'text-anchor': 'middle', 'font-size': 13, 'font-weight': 'bold' }, label(h) + (h.self ? ' (this host)' : '')));
    g.appendChild(sv('text', { x: p.x, y: p.y + 5, 'text-anchor': 'middle', 'font-size': 12, class: 'state',
      fill: h.state === 'up' ? '#1b5e20' : '#b00020' }, h.state));
    g.appendChild(sv('text', { x: p.x, y: p.y + 44, 'text-anchor': 'middle', 'font-size': 10, fill: '#555' }, h.name));
    nodes.appendChild(g);
  }
  svg.appendChild(nodes);
}
function render(m, flows) {
  drawMesh(m);
  $('hosts-table').replaceChildren(table(['Host', 'Peer name', 'State', 'Why', 'Health report'],
    m.hosts.map((h) => [label(h) + (h.self ? ' (this host)' : ''), h.name, { cls: h.state, text: h.state }, h.reason || '',
      h.self ? 'own' : { cls: h.stale ? 'stale' : '', text: h.stale ? 'stale' : 'fresh' }])));
  const nets = $('networks');
  nets.replaceChildren();
  for (const n of m.networks) {
    nets.appendChild(el('h3', {}, 'Network ' + n.name + ' (' + n.containers.length + ' containers)'));
    nets.appendChild(table(['Container', 'Address', 'Host'], n.containers.map((c) => [c.name || '(unnamed)', c.address, c.hostNickname || c.host])));
  }
  if (m.networks.length === 0) nets.appendChild(el('p', {}, 'No containers.'));
  const rows = m.health.rows;
  const cols = m.hosts.map((h) => h.name);
  const mtx = el('table', { id: 'matrix' });
  const head = el('tr');
  head.appendChild(el('th', { scope: 'col' }, 'view of \\u2192 / from \\u2193'));
  for (const c of cols) head.appendChild(el('th', { scope: 'col' }, names(m).get(c)));
  mtx.appendChild(head);
  for (const r of rows) {
    const tr = el('tr');
    tr.appendChild(el('th', { scope: 'row', class: r.stale ? 'stale' : '' }, (r.nickname || r.name) + (r.stale ? ' (stale, ' + Math.round(r.ageMs / 1000) + ' s old)' : '')));
    for (const c of cols) {
      if (c === r.name) { tr.appendChild(el('td', {}, '-')); continue; }
      const v = r.peers.find((p) => p.name === c);
      if (!v) { tr.appendChild(el('td', {}, 'unknown')); continue; }
      const text = v.up
        ? 'up ' + ms(v.rttMs) + ' ' + v.datapath + (v.encrypted ? ' encrypted' : ' clear') + ' pmtu ' + (v.pmtu ?? '-') + ' loss ' + (v.loss === null ? '-' : Math.round(v.loss * 100) + '%')
        : 'down: ' + v.reason;
      tr.appendChild(el('td', { class: v.up ? 'up' : 'down' }, text));
    }
    mtx.appendChild(tr);
  }
  $('health').replaceChildren(mtx);
  $('counters').replaceChildren(table(['Peer', 'Frames in', 'Frames out', 'Bytes in', 'Bytes out'],
    m.counters.map((c) => [c.nickname || c.peer, c.framesIn, c.framesOut, bytes(c.bytesIn), bytes(c.bytesOut)])));
  const drops = Object.entries(m.drops);
  $('drops').textContent = drops.length === 0 ? 'No drops.' : 'Drops: ' + drops.map(([k, v]) => k + ' ' + v).join(', ');
  if (flows) {
    $('flows').replaceChildren(flows.flows.length === 0 ? el('p', {}, flows.enabled ? 'No traffic in the last minute.' : 'Flow counting is off (--no-flows).')
      : table(['From', 'To', 'Network', 'Bytes', 'Packets', 'Path'], flows.flows.slice(0, 10).map((f) => [
        endName(f.src), endName(f.dst),
        f.network, bytes(f.bytes), f.packets, f.datapath])));
  }
  $('live').className = '';
  $('live').textContent = 'Updated ' + new Date(m.time).toLocaleTimeString() + ' from ' + label(m.self) + '.';
}
function endName(e) {
  if (e.host) return (e.name || e.address) + ' (' + e.host + ')';
  return e.name ? e.name + ' ' + e.mac : e.mac;
}
function names(m) { return new Map(m.hosts.map((h) => [h.name, label(h)])); }
async function refresh() {
  try {
    const r = await fetch('/status/mesh', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const m = await r.json();
    let flows;
    try { const f = await fetch('/flows', { cache: 'no-store' }); if (f.ok) flows = await f.json(); } catch (e) { flows = undefined; }
    render(m, flows);
    document.body.setAttribute('data-updated', m.time);
  } catch (err) {
    $('live').className = 'error';
    $('live').textContent = 'Cannot reach the daemon: ' + err.message + ' (retrying)';
  } finally {
    setTimeout(refresh, 1000);
  }
}
refresh();
`;

/** sha256 of the inline script, for the Content-Security-Policy. */
const SCRIPT_HASH = createHash('sha256').update(SCRIPT).digest('base64');

/** No other origin, no inline script but ours, no plugins, no framing. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${SCRIPT_HASH}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const STATUS_PAGE_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>weavets mesh</title>
<style>${STYLE}</style>
</head>
<body>
<h1>weavets mesh</h1>
<p id="live" role="status" aria-live="polite">Loading…</p>
<p class="legend" aria-label="legend">
<span><i class="sw" style="border-color:#1b5e20"></i>fastdp</span>
<span><i class="sw" style="border-color:#0d47a1"></i>sleeve</span>
<span><i class="sw" style="border-color:#0d47a1;border-top-style:dashed"></i>clear (dashed) / encrypted (solid)</span>
<span><i class="sw" style="border-color:#b00020;border-top-style:dotted"></i>down</span>
</p>
<svg id="mesh" role="img" aria-label="mesh picture" width="760" height="420"></svg>
<h2>Hosts</h2>
<div id="hosts-table"></div>
<h2>Health matrix (each row: one host's view of the others)</h2>
<div id="health"></div>
<h2>Networks and containers</h2>
<div id="networks"></div>
<h2>Traffic</h2>
<div id="counters"></div>
<p id="drops"></p>
<h3>Top container pairs, last minute</h3>
<div id="flows"></div>
<script>${SCRIPT}</script>
</body>
</html>
`;
