// Findings of the whole-network scan (GET /findings): a list filtered by status and verdict, in
// Chinese first; a row marks its two pipes and flies to the place. Approvers move a finding
// (POST /findings/{key}/status: 活动 / 已审核 / 已批准; approving a violation or a pair no rule
// covers needs a reason). The life cycle is the server's (analysis/findings.py); this only shows it.

import { can, enc, getJSON, postJSON } from './api.js';
import { $, busy, el, guard, num, showPanel, table, text, toast } from './ui.js';
import { cartesian, toLonLat } from './geo.js';
import { lookDownAt } from './scene.js';
import { setMarks } from './tools.js';
import { knows, named, tr } from './i18n.js';

/** The statuses and verdicts a filter offers; their names come from GET /view/vocabulary. */
export const STATUSES = ['new', 'active', 'reviewed', 'approved', 'resolved'];
export const VERDICTS = ['violation', 'uncertain', 'no_rule'];
const statusName = (s) => named('finding_status', s);
const verdictName = (v) => named('verdict', v);
const kindName = (k) => (knows('scan_kind', k) ? named('scan_kind', k) : named('finding_kind', k));
/** A pair of utility codes ('JS-RQ') spelled out: 给水–燃气. */
const pairName = (pair) => (pair ? pair.split('-').map((u) => named('utility', u)).join('–') : '');
const COLOURS = { violation: '#ff2d2d', uncertain: '#ff9f1a', no_rule: '#b04dff' };
const MOVES = { new: ['reviewed', 'approved', 'active'], active: ['reviewed', 'approved'],
  reviewed: ['approved', 'active'], approved: ['reviewed', 'active'], resolved: [] };

const state = { filters: { status: ['new', 'active', 'reviewed'], verdict: [] }, doc: null, shown: null };

function query(filters) {
  const q = new URLSearchParams({ limit: '200' });
  for (const s of filters.status) q.append('status', s);
  for (const v of filters.verdict) q.append('verdict', v);
  return q.toString();
}

function choice(name, codes, nameOf, chosen) {
  return el('fieldset', { class: 'filters', 'data-filter': name },
    ...codes.map((k) => el('label', {},
      el('input', { type: 'checkbox', value: k, checked: chosen.includes(k) || null,
        onchange: (e) => { toggle(name, k, e.target.checked); } }), ` ${nameOf(k)}`)));
}

function toggle(name, value, on) {
  const list = state.filters[name].filter((v) => v !== value);
  state.filters[name] = on ? [...list, value] : list;
  openList();
}

/** The list of findings in the panel (drawn again on the language switch). */
function renderList(doc) {
  const rows = doc.findings.map((f) => ({
    attrs: { dataset: { finding: f.key, verdict: f.verdict, status: f.status }, onclick: () => zoomTo(f),
      style: { cursor: 'pointer' } },
    cells: [el('span', { class: 'badge', 'data-status': f.status }, statusName(f.status)),
      el('span', { class: 'badge', style: { color: COLOURS[f.verdict] } }, verdictName(f.verdict)), kindName(f.kind),
      `${f.a_id} / ${f.b_id || '–'}`, text(f.road)],
  }));
  const c = doc.counts;
  const counts = Object.entries(c.verdict).map(([k, n]) => `${verdictName(k)} ${n}`).join(tr('，', ', '));
  const more = doc.numberMatched > doc.findings.length;
  showPanel(tr('管线问题', 'Findings'), [
    choice('status', STATUSES, statusName, state.filters.status),
    choice('verdict', VERDICTS, verdictName, state.filters.verdict),
    el('p', { 'data-role': 'finding-counts' }, tr(`共 ${doc.numberMatched} 项：${counts}${more ? `（显示前 ${doc.findings.length} 项）` : ''}`,
      `${doc.numberMatched} findings: ${counts}${more ? ` (first ${doc.findings.length} shown)` : ''}`)),
    rows.length ? table([tr('状态', 'status'), tr('判定', 'verdict'), tr('类型', 'kind'), tr('管段', 'pipes'), tr('道路', 'road')], rows,
      { 'data-role': 'finding-list' })
      : el('p', { class: 'muted' }, tr('没有问题：请先运行全网扫描（twin analyze scan）。', 'No findings: run the whole-network scan (twin analyze scan).')),
  ], 'findings', () => renderList(doc));
}

/** The findings list with its filters; a row zooms to the finding. */
export async function openList(filters = null) {
  if (filters) state.filters = { status: filters.status || [], verdict: filters.verdict || [] };
  showPanel(tr('管线问题', 'Findings'), busy(tr('正在读取问题…', 'Reading the findings…')), 'findings');
  return guard(tr('管线问题', 'Findings'), async () => {
    const doc = await getJSON(`/findings?${query(state.filters)}`);
    state.doc = doc;
    renderList(doc);
    return doc;
  });
}

/** Mark a finding's two pipes, fly to it and show its detail (and, for approvers, its moves). */
export async function zoomTo(f) {
  state.shown = f;
  setMarks([f.a_id, f.b_id].filter(Boolean).map((id) => [id, COLOURS[f.verdict] || '#ff2d2d']), true);
  if (f.x != null && f.y != null) {
    const [p] = await toLonLat([[f.x, f.y, f.z ?? 0]]);
    if (p) lookDownAt(cartesian(p), 40);
  }
  return detail(f);
}

/** A finding's detail in the panel (drawn again on the language switch, the note kept). */
function detail(f) {
  const note = el('input', { type: 'text', name: 'note', maxlength: '2000',
    placeholder: tr('说明（批准违规项时必填）', 'note (approving a violation needs one)'), 'data-role': 'finding-note' });
  const moves = can('approve') ? (MOVES[f.status] || []) : [];
  showPanel(`${tr('问题', 'Finding')} ${f.key}`, [
    el('p', { 'data-role': 'finding-summary' }, `${statusName(f.status)} · ${verdictName(f.verdict)} · ` +
      `${kindName(f.kind)} ${f.a_id} / ${f.b_id || '–'} (${pairName(f.utility_pair)}), ${text(f.road)}; ` +
      tr(`实测 ${num(f.measured_m, 2, 'm')}，要求 ${num(f.required_m, 2, 'm')}，± ${num(f.uncertainty_m, 2, 'm')}`,
        `measured ${num(f.measured_m, 2, 'm')}, required ${num(f.required_m, 2, 'm')}, ± ${num(f.uncertainty_m, 2, 'm')}`)),
    moves.length ? el('div', {}, note, ...moves.map((s) => el('button', { 'data-move': s, onclick: () => move(f, s, note.value) },
      statusName(s)))) : '',
    el('button', { onclick: () => openList() }, tr('返回列表', 'Back to the list')),
  ], 'findings', () => detail(f));
  return f;
}

async function move(f, status, note) {
  return guard(tr('问题状态', 'Finding status'), async () => {
    const r = await postJSON(`/findings/${enc(f.key)}/status`, note ? { status, note } : { status });
    toast(`${r.key}: ${statusName(r.status)}`);
    return zoomTo(r);
  });
}

export function init() {
  const b = $('#findings-toggle');
  if (b) b.addEventListener('click', () => openList());
}

export function findingsState() {
  return state;
}
