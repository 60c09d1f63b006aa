// Proposals (管线审批): upload a proposed pipe or excavation (GeoJSON, or CJJ 61 point and
// segment tables that the server turns into GeoJSON) -> it is checked
// (collision, clearance, cover) and drawn in its own colour at its real depth; findings are
// marked and listed; the printable report opens; approvers decide findings and the proposal.
//
// Editors and approvers store the proposal for review (POST /proposals); viewers may only
// check it (the proposal-check process: nothing is stored).

/* global Cesium */

import { can, download, enc, execute, getJSON, getText, postJSON, request, session } from './api.js';
import { busy, drawing, el, guard, num, openDocument, section, showPanel, table, toast, when } from './ui.js';
import { flyToBox, groundHeight } from './scene.js';
import { toLonLat } from './geo.js';
import { clearMarks, overlay, register, setMarks } from './tools.js';

export const PROPOSAL_COLOUR = '#4d7cff';
const FINDING_COLOUR = '#ff2d2d';
// Each verdict in its own colour: a violation, a pair the survey's accuracy cannot decide
// (a trial trench or a new detection is needed), a pair no rule covers (the tool cannot judge).
export const VERDICT_COLOUR = { violation: FINDING_COLOUR, uncertain: '#ff9f1a', no_rule: '#b04dff' };
export const VERDICT_LABEL = {
  violation: '违规 violation', uncertain: '依探测精度无法判定 uncertain', no_rule: '无规则 no rule',
};
const ACCEPTED_COLOUR = '#2ecc71';
const KIND_LABEL = {
  collision: 'collision 碰撞', duplicate: 'duplicate', clearance_vertical: 'vertical clearance 垂直净距',
  clearance_horizontal: 'horizontal clearance 水平净距', cover: 'cover 覆土', no_rule: 'no rule 无规则',
};

function verdictOf(f) {
  return f.verdict || 'violation';
}

function markColour(f) {
  return f.status === 'accepted' ? ACCEPTED_COLOUR : VERDICT_COLOUR[verdictOf(f)] || FINDING_COLOUR;
}

const state = { layer: null, report: null, doc: null, name: null, stored: false, findingsAt: new Map() };

function layer() {
  if (!state.layer) state.layer = overlay('proposal');
  return state.layer;
}

function circle(r) {
  const out = [];
  for (let i = 0; i < 16; i += 1) {
    const a = (i / 16) * Math.PI * 2;
    out.push(new Cesium.Cartesian2(r * Math.cos(a), r * Math.sin(a)));
  }
  return out;
}

function rect(hw, hh) {
  return [new Cesium.Cartesian2(-hw, -hh), new Cesium.Cartesian2(hw, -hh), new Cesium.Cartesian2(hw, hh),
    new Cesium.Cartesian2(-hw, hh)];
}

/** Draw the proposal's pipes (a FeatureCollection in CRS84 with ellipsoidal heights). */
function drawShape(shape) {
  const ds = layer();
  const colour = Cesium.Color.fromCssColorString(PROPOSAL_COLOUR);
  let west = 180; let east = -180; let south = 90; let north = -90; let low = Infinity; let high = -Infinity;
  for (const f of shape.features) {
    const coords = f.geometry.coordinates;
    const p = f.properties;
    for (const [lon, lat, h] of coords) {
      west = Math.min(west, lon); east = Math.max(east, lon); south = Math.min(south, lat); north = Math.max(north, lat);
      low = Math.min(low, h); high = Math.max(high, h);
    }
    const positions = coords.map(([lon, lat, h]) => Cesium.Cartesian3.fromDegrees(lon, lat, h));
    const hw = Math.max(p.half_width_m, 0.05);
    const hh = Math.max(p.half_height_m, 0.05);
    ds.entities.add({
      id: `proposal-${f.id}`,
      name: `Proposed ${p.kind} ${p.id}`,
      polylineVolume: {
        positions,
        shape: p.shape === 'circular' ? circle(hw) : rect(hw, hh),
        cornerType: Cesium.CornerType.MITERED,
        material: colour.withAlpha(0.85),
        outline: false,
      },
    });
    // A line on the ground above it, so it is found from afar.
    ds.entities.add({
      polyline: {
        positions: coords.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, groundHeight(lon, lat) + 0.1)),
        width: 2, material: new Cesium.PolylineDashMaterialProperty({ color: colour }),
      },
    });
  }
  return { west, east, south, north, low, high };
}

async function drawFindings(findings) {
  const ds = layer();
  state.findingsAt = new Map();
  const located = findings.filter((f) => Number.isFinite(f.x) && Number.isFinite(f.y));
  if (!located.length) return;
  const pts = await toLonLat(located.map((f) => (Number.isFinite(f.z) ? [f.x, f.y, f.z] : [f.x, f.y])));
  located.forEach((f, i) => {
    const [lon, lat, h] = pts[i];
    const height = Number.isFinite(h) ? h : groundHeight(lon, lat);
    state.findingsAt.set(f.key, [lon, lat, height]);
    ds.entities.add({
      id: `finding-${f.key}`,
      position: Cesium.Cartesian3.fromDegrees(lon, lat, height),
      point: { pixelSize: 12, color: Cesium.Color.fromCssColorString(markColour(f)),
        outlineColor: Cesium.Color.WHITE, outlineWidth: 2, disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: { text: String(i + 1), font: 'bold 13px sans-serif', fillColor: Cesium.Color.WHITE,
        outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        pixelOffset: new Cesium.Cartesian2(10, -12), horizontalOrigin: Cesium.HorizontalOrigin.LEFT,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
    });
  });
}

function flyToFinding(key) {
  const p = state.findingsAt.get(key);
  if (!p) return;
  const d = 0.00015;
  flyToBox(p[0] - d, p[1] - d, p[0] + d, p[1] + d, p[2] - 2, p[2] + 2, 0.8);
}

async function decideFinding(key, status) {
  const id = state.report.proposal_id;
  const finding = state.report.findings.find((f) => f.key === key);
  const noRule = finding && finding.kind === 'no_rule';
  const question = noRule
    ? '无规则: no clearance rule covers this pair. Why is it acceptable? (the reason is required and recorded)'
    : 'Why is it acceptable? (recorded)';
  const note = status === 'accepted' ? window.prompt(question, '') : null;
  if (note === null && status === 'accepted') return;
  if (noRule && status === 'accepted' && !note.trim()) {
    toast('A no-rule finding (无规则) is accepted only with the reason', 'error');
    return;
  }
  await guard('Deciding the finding', async () => {
    const r = await postJSON(`/proposals/${id}/findings/${enc(key)}/decision`, { status, note: note || null });
    await show(r, { redraw: false });
  });
}

async function decide(status) {
  const r0 = state.report;
  let body = { status };
  if (status === 'approved' && r0.open_findings > 0) {
    const override = window.prompt(`${r0.open_findings} findings are not accepted. Approve anyway? Give the reason (recorded):`, '');
    if (!override) return;
    body = { status, override };
  } else if (status === 'rejected') {
    const note = window.prompt('Why is it rejected? (recorded)', '');
    if (note === null) return;
    body = { status, note: note || null };
  }
  await guard('Deciding the proposal', async () => {
    const r = await postJSON(`/proposals/${r0.proposal_id}/decision`, body);
    toast(`Proposal ${r.proposal_id} is ${r.status}`, 'ok');
    await show(r, { redraw: false });
  });
}

/** The submitter (or an admin) takes back a proposal not yet decided. */
async function withdraw() {
  const r0 = state.report;
  const note = window.prompt(`撤回方案 Withdraw proposal ${r0.proposal_id}? Why (recorded, optional):`, '');
  if (note === null) return;
  await guard('Withdrawing the proposal', async () => {
    const r = await postJSON(`/proposals/${r0.proposal_id}/withdraw`, { note: note || null });
    toast(`方案已撤回 Proposal ${r.proposal_id} is ${r.status}`, 'ok');
    await show(r, { redraw: false });
  });
}

function mayWithdraw(r) {
  const me = session.get()?.user;
  return Boolean(r.proposal_id) && ['new', 'reviewed'].includes(r.status) && (r.created_by === me || can('admin'));
}

async function openReport() {
  await guard('Opening the report', async () => {
    const r = state.report;
    const html = r.proposal_id
      ? await getText(`/proposals/${r.proposal_id}/report`)
      : await execute('proposal-check', { proposal: state.doc, name: state.name || undefined }, 'html');
    openDocument(html, 'text/html', 'The report');
    state.reportOpened = (state.reportOpened || 0) + 1;
  });
}

async function worstSection(target) {
  await guard('The cross-section at the worst place', async () => {
    const r = state.report;
    const svg = r.proposal_id
      ? await getText(`/proposals/${r.proposal_id}/section.svg`)
      : await execute('proposal-check', { proposal: state.doc, name: state.name || undefined }, 'svg');
    target.replaceChildren(drawing(svg, 'Cross-section at the worst place'));
  });
}

function statusBadge(status) {
  const cls = { new: '', reviewed: 'info', approved: 'ok', rejected: 'danger', withdrawn: 'muted' }[status] || '';
  return el('span', { class: `badge ${cls}`, 'data-role': 'proposal-status' }, status);
}

function render(r) {
  const approver = can('approve') && r.proposal_id && !['approved', 'rejected', 'withdrawn'].includes(r.status);
  const rows = r.findings.map((f, i) => ({
    attrs: { dataset: { finding: f.key, kind: f.kind, verdict: verdictOf(f) }, class: f.status === 'accepted' ? '' : 'critical' },
    cells: [String(i + 1), el('div', {}, el('strong', {}, KIND_LABEL[f.kind] || f.kind), ' ',
      el('span', { class: 'badge', 'data-role': 'verdict', style: { background: VERDICT_COLOUR[verdictOf(f)], color: '#fff' } },
        VERDICT_LABEL[verdictOf(f)] || verdictOf(f)),
      el('div', { class: 'small' }, f.summary +
        (Number.isFinite(f.uncertainty_m) && f.uncertainty_m > 0 ? ` (survey ± ${num(f.uncertainty_m, 2)} m)` : ''))),
      f.status,
      el('span', { class: 'row-actions' },
        el('button', { class: 'small', onclick: () => flyToFinding(f.key) }, 'Show'),
        approver && f.status !== 'resolved' ? el('button', { class: 'small', onclick: () => decideFinding(f.key, 'accepted') }, 'Accept') : null,
        approver && f.status !== 'resolved' ? el('button', { class: 'small', onclick: () => decideFinding(f.key, 'rejected') }, 'Reject') : null)],
  }));
  const sectionBox = el('div', { 'data-role': 'proposal-section' });
  const counts = Object.entries(r.counts || {}).map(([k, n]) => `${n} ${KIND_LABEL[k] || k}`).join(', ');
  const verdicts = r.verdicts || {};
  const verdictLine = el('p', { 'data-role': 'proposal-verdicts' }, ...['violation', 'uncertain', 'no_rule'].map((v) =>
    el('span', { class: 'legend-item', dataset: { verdict: v } },
      el('i', { class: 'swatch', style: { background: VERDICT_COLOUR[v] } }), `${VERDICT_LABEL[v]}: ${verdicts[v] || 0}`)));
  const events = (r.events || []).map((e) => [when(e.at), e.by || '–', e.action,
    e.to_status || '–', e.note || '–']);
  showPanel(r.proposal_id ? `Proposal ${r.proposal_id}: ${r.name}` : `Proposal check: ${r.name}`, [
    el('p', { 'data-role': 'proposal-summary' },
      el('span', { class: `badge ${r.passed ? 'ok' : 'danger'}`, 'data-role': 'proposal-result' }, r.passed ? 'pass' : 'fail'), ' ',
      r.proposal_id ? statusBadge(r.status) : el('span', { class: 'badge' }, 'not stored'), ' ',
      `${r.utility} ${r.size}, ${num(r.length_m, 1)} m; ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}` +
      (counts ? ` (${counts})` : '') + `; ${r.candidates} pipes nearby checked.`),
    verdictLine,
    el('p', { class: 'legend-inline' },
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: PROPOSAL_COLOUR } }), 'proposed'),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: FINDING_COLOUR } }), 'violation / pipe involved'),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: VERDICT_COLOUR.uncertain } }),
        'uncertain: trial trench or new detection 需探槽或复测'),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: VERDICT_COLOUR.no_rule } }),
        'no rule 无规则: the approver judges')),
    section('Findings', r.findings.length
      ? table(['#', 'finding', 'status', ''], rows, { 'data-role': 'findings' })
      : el('p', { class: 'ok-text', 'data-role': 'findings' }, 'No collision, clearance or cover problem found.')),
    el('div', { class: 'actions' },
      el('button', { 'data-action': 'report', onclick: () => openReport() }, 'Open the report'),
      el('button', { onclick: () => worstSection(sectionBox) }, 'Section at the worst place'),
      approver && r.status === 'new' ? el('button', { onclick: () => decide('reviewed') }, 'Mark reviewed') : null,
      approver && r.status === 'reviewed' ? el('button', { class: 'primary', 'data-action': 'approve', onclick: () => decide('approved') }, 'Approve') : null,
      approver ? el('button', { class: 'danger', 'data-action': 'reject', onclick: () => decide('rejected') }, 'Reject') : null,
      mayWithdraw(r) ? el('button', { 'data-action': 'withdraw', onclick: () => withdraw() }, '撤回 Withdraw') : null,
      r.proposal_id ? el('button', { 'data-action': 'package', title: '审批包 PDF: the approval package to sign and file',
        onclick: () => guard('The approval package', () => download(`/proposals/${r.proposal_id}/report.pdf`,
          `proposal-${r.proposal_id}.pdf`)) }, '审批包 PDF') : null,
      r.proposal_id ? el('button', { 'data-action': 'bcf', title: 'BCF 3.0: the findings for BIM tools',
        onclick: () => guard('The findings as BCF', () => download(`/proposals/${r.proposal_id}/findings.bcf`,
          `proposal-${r.proposal_id}-findings.bcf`)) }, 'BCF') : null,
      el('button', { onclick: () => clear() }, 'Clear')),
    sectionBox,
    events.length ? section('History', table(['when', 'who', 'action', 'status', 'note'], events)) : null,
    uploadForm(),
  ], 'proposal');
}

/** Show a report (from the check or a stored proposal): panel, marks, and in 3D. */
async function show(r, { redraw = true, shape = null } = {}) {
  state.report = r;
  state.drawn = false;
  render(r);
  // each pipe involved in the colour of its worst open finding
  const rank = { violation: 0, uncertain: 1, no_rule: 2 };
  const worst = new Map();
  for (const f of r.findings) {
    if (f.status === 'accepted' || f.status === 'resolved') continue;
    for (const id of f.ids) {
      const v = verdictOf(f);
      if (!worst.has(id) || rank[v] < rank[worst.get(id)]) worst.set(id, v);
    }
  }
  const involved = new Set(r.findings.flatMap((f) => f.ids));
  setMarks([...involved].map((id) => [id, worst.has(id) ? VERDICT_COLOUR[worst.get(id)] : ACCEPTED_COLOUR]), true);
  let box = null;
  if (redraw) {
    layer().entities.removeAll();
    if (shape) box = drawShape(shape);
    else if (r.proposal_id) box = drawShape(await getJSON(`/view/proposals/${r.proposal_id}/shape`));
    else if (state.doc) box = drawShape(await postJSON('/view/proposal-shape', { proposal: state.doc }));
  } else {
    // A decision: the proposal stays drawn; the findings' markers take their new status.
    for (const e of layer().entities.values.slice()) {
      if (String(e.id).startsWith('finding-')) layer().entities.remove(e);
    }
  }
  await drawFindings(r.findings);
  state.drawn = true;
  if (redraw && box) flyToBox(box.west, box.south, box.east, box.north, box.low - 2, box.high + 2);
  return r;
}

/** Check (and, with the right, store) a proposal given as GeoJSON. */
export async function submit(doc, name) {
  state.doc = doc;
  state.name = name || null;
  showPanel('Proposal', busy('Checking the proposal against the network…'), 'proposal');
  return guard('Proposal', async () => {
    let r;
    if (can('propose')) {
      const res = await request('/proposals', { method: 'POST', json: doc, query: { name: name || undefined } });
      r = await res.json();
      state.stored = true;
    } else {
      r = await execute('proposal-check', { proposal: doc, name: name || undefined });
      state.stored = false;
      toast('Checked only: your role may not store proposals', 'info');
    }
    return show(r);
  });
}

export async function openStored(id) {
  showPanel(`Proposal ${id}`, busy('Reading the proposal…'), 'proposal');
  return guard('Proposal', async () => {
    state.doc = null;
    return show(await getJSON(`/proposals/${id}`));
  });
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsText(file);
  });
}

const TABLE_FILE = /\.(csv|xlsx)$/i;

/** Which of two CJJ 61 tables is the point table and which the segment table, by file name. */
function pointsAndSegments(files) {
  const segment = /段|segment|line|link/i;
  const point = /点|point|node/i;
  const [a, b] = files;
  if (segment.test(a.name) !== segment.test(b.name)) return segment.test(a.name) ? [b, a] : [a, b];
  if (point.test(a.name) !== point.test(b.name)) return point.test(a.name) ? [a, b] : [b, a];
  return null;
}

/** The proposal GeoJSON the server makes of CJJ 61 point and segment tables (checked as an import is). */
async function tablesToGeoJSON(points, segments) {
  const form = new FormData();
  form.append('points', points, points.name);
  form.append('segments', segments, segments.name);
  return (await request('/proposals/tables', { method: 'POST', body: form })).json();
}

function uploadForm() {
  const file = el('input', {
    type: 'file', id: 'proposal-file', multiple: true,
    accept: '.geojson,.json,application/geo+json,application/json,.csv,.xlsx',
  });
  const name = el('input', { type: 'text', id: 'proposal-name', placeholder: 'name (optional)', maxlength: '200' });
  const form = el('form', {
    class: 'upload',
    onsubmit: async (e) => {
      e.preventDefault();
      const files = [...file.files];
      if (!files.length) {
        toast('Choose a GeoJSON file, or the point and segment tables, of the proposed pipe', 'info');
        return;
      }
      if (files.some((f) => TABLE_FILE.test(f.name))) {
        const pair = files.length === 2 && files.every((f) => TABLE_FILE.test(f.name)) ? pointsAndSegments(files) : null;
        if (!pair) {
          toast('Choose two tables (CSV or XLSX) whose names tell the point table (点, point) from the segment table (段, segment)', 'error');
          return;
        }
        showPanel('Proposal', busy('Reading the proposal tables…'), 'proposal');
        const doc = await guard('Proposal tables', () => tablesToGeoJSON(pair[0], pair[1]));
        if (!doc) {
          start();
          return;
        }
        await submit(doc, name.value.trim() || pair[1].name.replace(/\.[^.]+$/, ''));
        return;
      }
      if (files.length !== 1) {
        toast('Choose one GeoJSON file, or two tables (points and segments)', 'error');
        return;
      }
      const f = files[0];
      let doc;
      try {
        doc = JSON.parse(await readFile(f));
      } catch (err) {
        toast(`${f.name} is not GeoJSON: ${err.message}`, 'error');
        return;
      }
      await submit(doc, name.value.trim() || (doc.name || (doc.properties && doc.properties.name)) || f.name.replace(/\.[^.]+$/, ''));
    },
  }, el('label', { for: 'proposal-file' }, 'Proposed pipe or excavation: one GeoJSON (LineString with utility, size, depth_m; '
    + 'Polygon with depth_m), or two CJJ 61 tables (points + segments, CSV or XLSX)'),
  file, name, el('button', { type: 'submit', class: 'primary' }, can('propose') ? 'Check and submit' : 'Check'));
  return section('New proposal', form);
}

async function listStored(target) {
  await guard('Proposals', async () => {
    const r = await getJSON('/proposals');
    const rows = r.proposals.slice().reverse().map((p) => ({
      attrs: { dataset: { proposal: String(p.id) } },
      cells: [String(p.id), p.name, p.utility, statusBadge(p.status), p.passed ? 'pass' : 'fail', String(p.open ?? '–'),
        el('button', { class: 'small', onclick: () => openStored(p.id) }, 'Open')],
    }));
    target.replaceChildren(rows.length ? table(['id', 'name', 'utility', 'status', 'check', 'open', ''], rows)
      : el('p', { class: 'muted' }, 'No proposals yet.'));
  });
}

export function start() {
  const list = el('div', {}, busy('Reading the proposals…'));
  showPanel('Proposals 管线审批', [uploadForm(), section('Stored proposals', list)], 'proposal');
  listStored(list);
}

export function clear() {
  if (state.layer) state.layer.entities.removeAll();
  state.report = null;
  clearMarks();
  start();
}

export function proposalState() {
  return state;
}

register({
  id: 'proposal',
  label: 'Proposal',
  hint: 'Proposal: upload a GeoJSON, or the point and segment tables, of the proposed pipe in the panel. Esc to stop.',
  submit,
  start,
  click() {},
  leave() {
    if (state.layer) state.layer.entities.removeAll();
    state.drawn = false;
    clearMarks();
  },
});
