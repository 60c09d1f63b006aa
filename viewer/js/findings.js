// Findings of the whole-network scan (GET /findings): a list filtered by status and verdict, in
// Chinese first; a row marks its two pipes and flies to the place. Approvers move a finding
// (POST /findings/{key}/status: 活动 / 已审核 / 已批准; approving a violation or a pair no rule
// covers needs a reason). The life cycle is the server's (analysis/findings.py); this only shows it.

import { can, enc, getJSON, postJSON } from './api.js';
import { $, busy, el, guard, showPanel, table, text, toast } from './ui.js';
import { cartesian, toLonLat } from './geo.js';
import { lookDownAt } from './scene.js';
import { setMarks } from './tools.js';

export const STATUS_ZH = { new: '新发现', active: '活动', reviewed: '已审核', approved: '已批准', resolved: '已解决' };
export const VERDICT_ZH = { violation: '违规', uncertain: '无法判定', no_rule: '无规则' };
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

function choice(name, labels, chosen) {
  return el('fieldset', { class: 'filters', 'data-filter': name },
    ...Object.entries(labels).map(([k, zh]) => el('label', {},
      el('input', { type: 'checkbox', value: k, checked: chosen.includes(k) || null,
        onchange: (e) => { toggle(name, k, e.target.checked); } }), ` ${zh} ${k}`)));
}

function toggle(name, value, on) {
  const list = state.filters[name].filter((v) => v !== value);
  state.filters[name] = on ? [...list, value] : list;
  openList();
}

/** The findings list with its filters; a row zooms to the finding. */
export async function openList(filters = null) {
  if (filters) state.filters = { status: filters.status || [], verdict: filters.verdict || [] };
  showPanel('管线问题 Findings', busy('Reading the findings…'), 'findings');
  return guard('Findings', async () => {
    const doc = await getJSON(`/findings?${query(state.filters)}`);
    state.doc = doc;
    const rows = doc.findings.map((f) => ({
      attrs: { dataset: { finding: f.key, verdict: f.verdict, status: f.status }, onclick: () => zoomTo(f),
        style: { cursor: 'pointer' } },
      cells: [el('span', { class: 'badge', 'data-status': f.status }, f.status_label),
        el('span', { class: 'badge', style: { color: COLOURS[f.verdict] } }, f.verdict_label), f.kind,
        `${f.a_id} / ${f.b_id || '–'}`, text(f.road)],
    }));
    const c = doc.counts;
    showPanel('管线问题 Findings', [
      choice('status', STATUS_ZH, state.filters.status),
      choice('verdict', VERDICT_ZH, state.filters.verdict),
      el('p', { 'data-role': 'finding-counts' }, `${doc.numberMatched} 项 findings: ` +
        Object.entries(c.verdict).map(([k, n]) => `${VERDICT_ZH[k]} ${n}`).join(', ') +
        (doc.numberMatched > doc.findings.length ? ` (first ${doc.findings.length} shown)` : '')),
      rows.length ? table(['状态 status', '判定 verdict', '类型 kind', '管段 pipes', '道路 road'], rows,
        { 'data-role': 'finding-list' })
        : el('p', { class: 'muted' }, '没有问题 No findings: run the whole-network scan (twin analyze scan).'),
    ], 'findings');
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
  const note = el('input', { type: 'text', maxlength: '2000', placeholder: '说明 note (approving a violation needs one)',
    'data-role': 'finding-note' });
  const moves = can('approve') ? (MOVES[f.status] || []) : [];
  showPanel(`问题 ${f.key}`, [
    el('p', { 'data-role': 'finding-summary' }, `${f.status_label} ${f.status} · ${f.verdict_label} ${f.verdict} · ` +
      `${f.kind} ${f.a_id} / ${f.b_id || '–'} (${f.utility_pair || ''}), ${text(f.road)}; measured ` +
      `${f.measured_m ?? '–'} m, required ${f.required_m ?? '–'} m, ± ${f.uncertainty_m ?? '–'} m`),
    moves.length ? el('div', {}, note, ...moves.map((s) => el('button', { 'data-move': s, onclick: () => move(f, s, note.value) },
      `${STATUS_ZH[s]} ${s}`))) : '',
    el('button', { onclick: () => openList() }, '返回列表 Back to the list'),
  ], 'findings');
  return f;
}

async function move(f, status, note) {
  return guard('Finding status', async () => {
    const r = await postJSON(`/findings/${enc(f.key)}/status`, note ? { status, note } : { status });
    toast(`${r.key}: ${r.status_label} ${r.status}`);
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
