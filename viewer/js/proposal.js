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
import { flyToBox, groundHeight, world } from './scene.js';
import { toLonLat } from './geo.js';
import { clearMarks, highlightPipe, overlay, register, setMarks } from './tools.js';
import { addChip, removeChip } from './chips.js';
import { named, tr } from './i18n.js';

export const PROPOSAL_COLOUR = '#4d7cff';
const FINDING_COLOUR = '#ff2d2d';
// Each verdict in its own colour: a violation, a pair the survey's accuracy cannot decide
// (a trial trench or a new detection is needed), a pair no rule covers (the tool cannot judge).
export const VERDICT_COLOUR = { violation: FINDING_COLOUR, uncertain: '#ff9f1a', no_rule: '#b04dff' };
/** A verdict and a finding's kind, spelled out (GET /view/vocabulary). */
export const VERDICT_LABEL = new Proxy({}, { get: (_, v) => named('verdict', v) });
const ACCEPTED_COLOUR = '#2ecc71';
const KIND_LABEL = new Proxy({}, { get: (_, k) => named('finding_kind', k) });

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
  state.shapeIds = shape.features.map((f) => String(f.properties.id ?? f.id));
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
      name: `${tr('拟建', 'Proposed')} ${p.kind} ${p.id}`,
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

/** The existing pipe of a finding (the proposal's own pipes are drawn apart), or null. */
function existingPipe(f) {
  const mine = new Set((state.shapeIds || []).map(String));
  return (f.ids || []).find((id) => !mine.has(String(id)) && !String(id).startsWith('proposal')) || null;
}

function flyToFinding(key) {
  const f = state.report && state.report.findings.find((x) => x.key === key);
  if (f) highlightPipe(existingPipe(f)); // the refused pipe in the 3D view
  const p = state.findingsAt.get(key);
  if (!p) return;
  const d = 0.00015;
  flyToBox(p[0] - d, p[1] - d, p[0] + d, p[1] + d, p[2] - 2, p[2] + 2, 0.8);
}

async function decideFinding(key, status) {
  const id = state.report.proposal_id;
  const finding = state.report.findings.find((f) => f.key === key);
  const noRule = finding && (finding.kind === 'no_rule' || (finding.rules || []).some((r) => r.verdict === 'no_rule'));
  const question = noRule
    ? tr('无规则：没有净距规则适用于这对管线。为何可以接受？（必须填写理由，将被记录）', 'No rule: no clearance rule covers this pair. Why is it acceptable? (the reason is required and recorded)')
    : tr('为何可以接受？（将被记录）', 'Why is it acceptable? (recorded)');
  const note = status === 'accepted' ? window.prompt(question, '') : null;
  if (note === null && status === 'accepted') return;
  if (noRule && status === 'accepted' && !note.trim()) {
    toast(tr('无规则的问题须填写理由才能接受', 'A no-rule finding is accepted only with the reason'), 'error');
    return;
  }
  await guard(tr('处理问题', 'Deciding the finding'), async () => {
    const r = await postJSON(`/proposals/${id}/findings/${enc(key)}/decision`, { status, note: note || null });
    await show(r, { redraw: false });
  });
}

async function decide(status) {
  const r0 = state.report;
  let body = { status };
  if (status === 'approved' && r0.open_findings > 0) {
    const override = window.prompt(tr(`${r0.open_findings} 项问题未接受。仍要批准？请填写理由（将被记录）：`, `${r0.open_findings} findings are not accepted. Approve anyway? Give the reason (recorded):`), '');
    if (!override) return;
    body = { status, override };
  } else if (status === 'rejected') {
    const note = window.prompt(tr('驳回理由？（将被记录）', 'Why is it rejected? (recorded)'), '');
    if (note === null) return;
    body = { status, note: note || null };
  }
  await guard(tr('审批方案', 'Deciding the proposal'), async () => {
    const r = await postJSON(`/proposals/${r0.proposal_id}/decision`, body);
    toast(tr(`方案 ${r.proposal_id}：${named('proposal_status', r.status)}`, `Proposal ${r.proposal_id} is ${r.status}`), 'ok');
    await show(r, { redraw: false });
  });
}

/** The submitter (or an admin) takes back a proposal not yet decided. */
async function withdraw() {
  const r0 = state.report;
  const note = window.prompt(tr(`撤回方案 ${r0.proposal_id}？理由（将被记录，可不填）：`, `Withdraw proposal ${r0.proposal_id}? Why (recorded, optional):`), '');
  if (note === null) return;
  await guard(tr('撤回方案', 'Withdrawing the proposal'), async () => {
    const r = await postJSON(`/proposals/${r0.proposal_id}/withdraw`, { note: note || null });
    toast(tr(`方案 ${r.proposal_id} 已撤回`, `Proposal ${r.proposal_id} is ${r.status}`), 'ok');
    await show(r, { redraw: false });
  });
}

function mayWithdraw(r) {
  const me = session.get()?.user;
  return Boolean(r.proposal_id) && ['new', 'reviewed'].includes(r.status) && (r.created_by === me || can('admin'));
}

async function openReport() {
  await guard(tr('打开报告', 'Opening the report'), async () => {
    const r = state.report;
    const html = r.proposal_id
      ? await getText(`/proposals/${r.proposal_id}/report`)
      : await execute('proposal-check', { proposal: state.doc, name: state.name || undefined }, 'html');
    openDocument(html, 'text/html', tr('报告', 'The report'));
    state.reportOpened = (state.reportOpened || 0) + 1;
  });
}

async function worstSection(target) {
  await guard(tr('最不利处横断面', 'The cross-section at the worst place'), async () => {
    const r = state.report;
    const svg = r.proposal_id
      ? await getText(`/proposals/${r.proposal_id}/section.svg`)
      : await execute('proposal-check', { proposal: state.doc, name: state.name || undefined }, 'svg');
    target.replaceChildren(drawing(svg, tr('最不利处横断面', 'Cross-section at the worst place')));
  });
}

function statusBadge(status) {
  const cls = { new: '', reviewed: 'info', approved: 'ok', rejected: 'danger', withdrawn: 'muted' }[status] || '';
  return el('span', { class: `badge ${cls}`, 'data-role': 'proposal-status', dataset: { status } }, named('proposal_status', status));
}

/** The pipes of a finding: id (utility size). */
function pipeNames(f) {
  return (f.ids || []).map((id, i) => `${id} (${[(f.utilities || [])[i], (f.sizes || [])[i]].filter(Boolean).join(' ')})`)
    .join(' / ');
}

/** Every rule a pair breaks, one line each. */
function rulesList(f) {
  return el('ul', { class: 'rules', 'data-role': 'rules' }, f.rules.map((r) => el('li', { dataset: { kind: r.kind, verdict: r.verdict } },
    el('span', { style: { color: VERDICT_COLOUR[r.verdict] || FINDING_COLOUR } }, KIND_LABEL[r.kind] || r.kind), ' ',
    r.kind === 'collision' && r.measured_m < 0 ? tr(`重叠 ${num(-r.measured_m, 2)} m`, `overlap ${num(-r.measured_m, 2)} m`)
      : `${r.rule || ''} ${r.clause || ''}: ${num(r.measured_m, 2)}` + (r.required_m === null || r.required_m === undefined ? ' m'
        : ` / ${num(r.required_m, 2)} m`) + (r.verdict === 'uncertain' ? ` (± ${num(r.uncertainty_m, 2)} m)` : ''))));
}

/** The pairs no clearance rule covers (无规则), as warning rows naming both pipes. */
function uncheckedPairs(r) {
  if (r.unchecked) return r.unchecked;
  return r.findings.filter((f) => (f.ids || []).length > 1 && (f.rules || [f]).some((x) => x.verdict === 'no_rule'))
    .map((f) => ({ key: f.key, pipes: f.ids.map((id, i) => ({ id, utility: (f.utilities || [])[i], size: (f.sizes || [])[i] })) }));
}

function uncheckedBox(r) {
  const pairs = uncheckedPairs(r);
  if (!pairs.length) return null;
  const name = (p) => `${p.id} (${[p.utility, p.size].filter(Boolean).join(' ')})`;
  return el('div', { class: 'warning-box', 'data-role': 'unchecked', role: 'alert' },
    el('strong', {}, tr(`${pairs.length} 对管线无规则可依, 需审批人判定`, `${pairs.length} pairs no rule covers: the approver judges`)),
    table([tr('拟建管线', 'proposed pipe'), tr('现状管线', 'existing pipe'), tr('净距 (m)', 'clearance (m)'), ''], pairs.map((u) => ({
      attrs: { class: 'unchecked-pair', dataset: { finding: u.key } },
      cells: [name(u.pipes[0]), u.pipes[1] ? name(u.pipes[1]) : '–', num(u.measured_m, 2),
        el('button', { class: 'small', onclick: () => flyToFinding(u.key) }, tr('查看', 'Show'))],
    }))));
}

function render(r) {
  const approver = can('approve') && r.proposal_id && !['approved', 'rejected', 'withdrawn'].includes(r.status);
  const rows = r.findings.map((f, i) => ({
    attrs: { dataset: { finding: f.key, kind: f.kind, verdict: verdictOf(f) }, class: f.status === 'accepted' ? '' : 'critical' },
    cells: [String(i + 1), el('div', {}, el('strong', {}, KIND_LABEL[f.kind] || f.kind), ' ',
      el('span', { class: 'badge', 'data-role': 'verdict', style: { background: VERDICT_COLOUR[verdictOf(f)], color: '#fff' } },
        VERDICT_LABEL[verdictOf(f)] || verdictOf(f)),
      el('div', { class: 'small', 'data-role': 'pipes' }, pipeNames(f)),
      (f.rules || []).length > 1 ? rulesList(f) : el('div', { class: 'small' }, f.summary +
        (Number.isFinite(f.uncertainty_m) && f.uncertainty_m > 0 ? tr(`（探测精度 ± ${num(f.uncertainty_m, 2)} m）`, ` (survey ± ${num(f.uncertainty_m, 2)} m)`) : ''))),
      named('proposal_finding_status', f.status),
      el('span', { class: 'row-actions' },
        el('button', { class: 'small', onclick: () => flyToFinding(f.key) }, tr('查看', 'Show')),
        approver && f.status !== 'resolved' ? el('button', { class: 'small', onclick: () => decideFinding(f.key, 'accepted') }, tr('接受', 'Accept')) : null,
        approver && f.status !== 'resolved' ? el('button', { class: 'small', onclick: () => decideFinding(f.key, 'rejected') }, tr('驳回', 'Reject')) : null)],
  }));
  const sectionBox = el('div', { 'data-role': 'proposal-section' });
  const counts = Object.entries(r.counts || {}).map(([k, n]) => `${n} ${KIND_LABEL[k] || k}`).join(', ');
  const verdicts = r.verdicts || {};
  const verdictLine = el('p', { 'data-role': 'proposal-verdicts' }, ...['violation', 'uncertain', 'no_rule'].map((v) =>
    el('span', { class: 'legend-item', dataset: { verdict: v } },
      el('i', { class: 'swatch', style: { background: VERDICT_COLOUR[v] } }), `${VERDICT_LABEL[v]}: ${verdicts[v] || 0}`)));
  const events = (r.events || []).map((e) => [when(e.at), e.by || '–', named('proposal_action', e.action),
    e.to_status ? named(e.finding_key ? 'proposal_finding_status' : 'proposal_status', e.to_status) : '–',
    e.note ? tr(e.note_zh || e.note, e.note) : '–']);
  showPanel(r.proposal_id ? `${tr('方案', 'Proposal')} ${r.proposal_id}: ${r.name}` : `${tr('方案检查', 'Proposal check')}: ${r.name}`, [
    el('p', { 'data-role': 'proposal-summary' },
      el('span', { class: `badge ${r.passed ? 'ok' : 'danger'}`, 'data-role': 'proposal-result', dataset: { result: r.passed ? 'pass' : 'fail' } },
        r.passed ? tr('通过', 'pass') : tr('未通过', 'fail')), ' ',
      r.proposal_id ? statusBadge(r.status) : el('span', { class: 'badge' }, tr('未保存', 'not stored')), ' ',
      tr(`${named('utility', r.utility)} ${r.size}，${num(r.length_m, 1)} m；${r.findings.length} 项问题` +
        (counts ? `（${counts}）` : '') + `；检查了附近 ${r.candidates} 条管线。`,
      `${named('utility', r.utility)} ${r.size}, ${num(r.length_m, 1)} m; ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}` +
      (counts ? ` (${counts})` : '') + `; ${r.candidates} pipes nearby checked.`)),
    verdictLine,
    el('p', { class: 'legend-inline' },
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: PROPOSAL_COLOUR } }), tr('拟建', 'proposed')),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: FINDING_COLOUR } }), tr('违规 / 涉及管线', 'violation / pipe involved')),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: VERDICT_COLOUR.uncertain } }),
        tr('无法判定：需探槽或复测', 'uncertain: trial trench or new detection')),
      el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: VERDICT_COLOUR.no_rule } }),
        tr('无规则：由审批人判定', 'no rule: the approver judges'))),
    uncheckedBox(r),
    section(tr('问题', 'Findings'), r.findings.length
      ? table(['#', tr('问题', 'finding'), tr('状态', 'status'), ''], rows, { 'data-role': 'findings' })
      : el('p', { class: 'ok-text', 'data-role': 'findings' }, tr('未发现碰撞、净距或覆土问题。', 'No collision, clearance or cover problem found.'))),
    el('div', { class: 'actions' },
      el('button', { 'data-action': 'report', onclick: () => openReport() }, tr('打开报告', 'Open the report')),
      el('button', { onclick: () => worstSection(sectionBox) }, tr('最不利处横断面', 'Section at the worst place')),
      approver && r.status === 'new' ? el('button', { 'data-action': 'review', onclick: () => decide('reviewed') }, tr('标记已审核', 'Mark reviewed')) : null,
      approver && r.status === 'reviewed' ? el('button', { class: 'primary', 'data-action': 'approve', onclick: () => decide('approved') }, tr('批准', 'Approve')) : null,
      approver ? el('button', { class: 'danger', 'data-action': 'reject', onclick: () => decide('rejected') }, tr('驳回', 'Reject')) : null,
      mayWithdraw(r) ? el('button', { 'data-action': 'withdraw', onclick: () => withdraw() }, tr('撤回', 'Withdraw')) : null,
      r.proposal_id ? el('button', { 'data-action': 'package', title: tr('审批包 PDF：签字归档用', 'The approval package PDF to sign and file'),
        onclick: () => guard(tr('审批包', 'The approval package'), () => download(`/proposals/${r.proposal_id}/report.pdf`,
          `proposal-${r.proposal_id}.pdf`)) }, tr('审批包 PDF', 'Approval package PDF')) : null,
      r.proposal_id ? el('button', { 'data-action': 'bcf', title: tr('BCF 3.0：供 BIM 软件使用的问题', 'BCF 3.0: the findings for BIM tools'),
        onclick: () => guard(tr('问题 BCF', 'The findings as BCF'), () => download(`/proposals/${r.proposal_id}/findings.bcf`,
          `proposal-${r.proposal_id}-findings.bcf`)) }, 'BCF') : null,
      el('button', { onclick: () => clear() }, tr('清除', 'Clear'))),
    sectionBox,
    events.length ? section(tr('记录', 'History'), table([tr('时间', 'when'), tr('操作人', 'who'), tr('操作', 'action'), tr('状态', 'status'), tr('说明', 'note')], events)) : null,
    uploadForm(),
  ], 'proposal', () => render(r));
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
  addChip('proposal', [`方案: ${r.name}`, `Proposal: ${r.name}`], () => {
    if (state.layer) state.layer.entities.removeAll();
    state.drawn = false;
    clearMarks();
  });
  if (redraw && box) flyToBox(box.west, box.south, box.east, box.north, box.low - 2, box.high + 2);
  return r;
}

/** Check (and, with the right, store) a proposal given as GeoJSON. */
export async function submit(doc, name) {
  state.doc = doc;
  state.name = name || null;
  showPanel(tr('方案审查', 'Proposal'), busy(tr('正在对照管网检查方案…', 'Checking the proposal against the network…')), 'proposal');
  return guard(tr('方案审查', 'Proposal'), async () => {
    let r;
    if (can('propose')) {
      const res = await request('/proposals', { method: 'POST', json: doc, query: { name: name || undefined } });
      r = await res.json();
      state.stored = true;
    } else {
      r = await execute('proposal-check', { proposal: doc, name: name || undefined });
      state.stored = false;
      toast(tr('仅检查：您的角色不能保存方案', 'Checked only: your role may not store proposals'), 'info');
    }
    return show(r);
  });
}

export async function openStored(id) {
  showPanel(`${tr('方案', 'Proposal')} ${id}`, busy(tr('正在读取方案…', 'Reading the proposal…')), 'proposal');
  return guard(tr('方案审查', 'Proposal'), async () => {
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

/** The CRS and axis order the proposal's coordinates take (the twin's, from /view/frame). */
function crsHint() {
  const crs = (world.frame && world.frame.crs) || 'EPSG:?';
  return el('p', { class: 'crs-hint', 'data-role': 'crs-hint' },
    tr(`坐标: ${crs}, X=北 (northing), Y=东 (easting)。GeoJSON 坐标按 [Y 东, X 北] 书写 (或经纬度 CRS84); `
      + '点表和线表按 X=北, Y=东 (CJJ 61)。',
    `Coordinates: ${crs}, X=北 (northing), Y=东 (easting). GeoJSON positions are [Y easting, X northing] `
      + '(or lon/lat in CRS84); the point and segment tables give X=northing, Y=easting (CJJ 61).'));
}

function uploadForm() {
  const file = el('input', {
    type: 'file', id: 'proposal-file', multiple: true,
    accept: '.geojson,.json,application/geo+json,application/json,.csv,.xlsx',
  });
  const name = el('input', { type: 'text', id: 'proposal-name', placeholder: tr('名称（可选）', 'name (optional)'), maxlength: '200' });
  const form = el('form', {
    class: 'upload',
    onsubmit: async (e) => {
      e.preventDefault();
      // the chosen file's input, also when the panel was drawn again in another language (ui.js)
      const files = [...(e.currentTarget.querySelector('input[type=file]') || file).files];
      if (!files.length) {
        toast(tr('请选择拟建管线的 GeoJSON 文件，或点表和线表', 'Choose a GeoJSON file, or the point and segment tables, of the proposed pipe'), 'info');
        return;
      }
      if (files.some((f) => TABLE_FILE.test(f.name))) {
        const pair = files.length === 2 && files.every((f) => TABLE_FILE.test(f.name)) ? pointsAndSegments(files) : null;
        if (!pair) {
          toast(tr('请选择两张表（CSV 或 XLSX），文件名须能区分点表（点, point）和线表（段, segment）',
            'Choose two tables (CSV or XLSX) whose names tell the point table (点, point) from the segment table (段, segment)'), 'error');
          return;
        }
        showPanel(tr('方案审查', 'Proposal'), busy(tr('正在读取方案表…', 'Reading the proposal tables…')), 'proposal');
        const doc = await guard(tr('方案表', 'Proposal tables'), () => tablesToGeoJSON(pair[0], pair[1]));
        if (!doc) {
          start();
          return;
        }
        await submit(doc, name.value.trim() || pair[1].name.replace(/\.[^.]+$/, ''));
        return;
      }
      if (files.length !== 1) {
        toast(tr('请选择一个 GeoJSON 文件，或两张表（点表和线表）', 'Choose one GeoJSON file, or two tables (points and segments)'), 'error');
        return;
      }
      const f = files[0];
      let doc;
      try {
        doc = JSON.parse(await readFile(f));
      } catch (err) {
        toast(tr(`${f.name} 不是 GeoJSON：${err.message}`, `${f.name} is not GeoJSON: ${err.message}`), 'error');
        return;
      }
      await submit(doc, name.value.trim() || (doc.name || (doc.properties && doc.properties.name)) || f.name.replace(/\.[^.]+$/, ''));
    },
  }, el('label', { for: 'proposal-file' }, tr('拟建管线或开挖范围：一个 GeoJSON（LineString 含 utility、size、depth_m；'
    + 'Polygon 含 depth_m），或两张 CJJ 61 表（点表 + 线表，CSV 或 XLSX）',
  'Proposed pipe or excavation: one GeoJSON (LineString with utility, size, depth_m; '
    + 'Polygon with depth_m), or two CJJ 61 tables (points + segments, CSV or XLSX)')),
  crsHint(), file, name, el('button', { type: 'submit', class: 'primary' }, can('propose') ? tr('检查并提交', 'Check and submit') : tr('检查', 'Check')));
  return section(tr('新方案', 'New proposal'), form);
}

async function listStored(target) {
  await guard(tr('方案', 'Proposals'), async () => {
    const r = await getJSON('/proposals');
    const rows = r.proposals.slice().reverse().map((p) => ({
      attrs: { dataset: { proposal: String(p.id) } },
      cells: [String(p.id), p.name, named('utility', p.utility), statusBadge(p.status), p.passed ? tr('通过', 'pass') : tr('未通过', 'fail'),
        String(p.open ?? '–'), el('button', { class: 'small', onclick: () => openStored(p.id) }, tr('打开', 'Open'))],
    }));
    target.replaceChildren(rows.length ? table([tr('编号', 'id'), tr('名称', 'name'), tr('类别', 'utility'), tr('状态', 'status'),
      tr('检查', 'check'), tr('未处理', 'open'), ''], rows)
      : el('p', { class: 'muted' }, tr('还没有方案。', 'No proposals yet.')));
  });
}

export function start() {
  const list = el('div', {}, busy(tr('正在读取方案…', 'Reading the proposals…')));
  showPanel(tr('管线审批', 'Proposals'), [uploadForm(), section(tr('已保存的方案', 'Stored proposals'), list)], 'proposal', start);
  listStored(list);
}

export function clear() {
  removeChip('proposal');
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
  get label() { return tr('方案审查', 'Proposal'); },
  get hint() { return tr('方案审查：在面板中上传拟建管线的 GeoJSON，或点表和线表。按 Esc 结束。', 'Proposal: upload a GeoJSON, or the point and segment tables, of the proposed pipe in the panel. Esc to stop.'); },
  submit,
  start,
  click() {},
  leave() {
    if (state.layer) state.layer.entities.removeAll();
    state.drawn = false;
    clearMarks();
    highlightPipe(null);
    removeChip('proposal');
  },
});
