// Planned shutdowns (关阀方案): the list, a record's state buttons (计划 → 已通知 → 执行中 →
// 已恢复, or 已取消), the crew's valve checklist (已关闭 closed / 失败 failed, buttons big enough
// for a phone), the customers to notify (critical first, CSV), hydrants out of service and the
// conflicts with other shutdowns. A failed valve recomputes the ring on the server at once.
// The record and its state machine are the server's (analysis/shutdown.py); this only shows them.

import { can, download, enc, getJSON, postJSON } from './api.js';
import { $, busy, el, guard, section, showPanel, table, text, toast, when } from './ui.js';
import { clearMarks, setMarks } from './tools.js';
import { named, tr } from './i18n.js';

/** A shutdown's status and a valve's state, spelled out (GET /view/vocabulary). */
const status = (s) => named('shutdown_status', s);
const valveWord = (s) => named('valve_state', s);
// The moves each status allows (the server checks them again: 409 otherwise).
const MOVES = { planned: ['notify', 'cancel'], notified: ['execute', 'cancel'], executing: ['restore', 'cancel'] };
const MOVE_LABEL = { notify: ['已通知', 'Notified'], execute: ['执行', 'Execute'], restore: ['恢复供水', 'Restore'], cancel: ['取消', 'Cancel'] };
const COLOURS = { isolated: '#ff2d2d', outage: '#ff9f1a', pending: '#ffe14d', closed: '#00e0ff', failed: '#8a2be2' };
const BIG = { minHeight: '44px', minWidth: '64px' }; // a thumb on a phone

const state = { list: [], record: null };

/** The list of shutdowns, soonest first; a row opens its record. */
export async function openList() {
  showPanel(tr('停水关阀计划', 'Shutdowns'), busy(tr('正在读取关阀计划…', 'Reading the shutdowns…')), 'shutdowns');
  return guard(tr('关阀计划', 'Shutdowns'), async () => {
    state.list = (await getJSON('/shutdowns')).shutdowns;
    listPanel();
    return state.list;
  });
}

/** The list's panel (drawn again on the language switch). */
function listPanel() {
  const rows = state.list.map((s) => ({
    attrs: { dataset: { shutdown: String(s.id) }, onclick: () => open(s.id), style: { cursor: 'pointer' } },
    cells: [String(s.id), el('span', { class: 'badge', 'data-status': s.status }, status(s.status)), s.pipe,
      when(s.planned_start), String(s.customer_count), s.critical_count ? el('b', {}, String(s.critical_count)) : '0'],
  }));
  showPanel(tr('停水关阀计划', 'Shutdowns'), [
    state.list.length ? table(['#', tr('状态', 'status'), tr('管段', 'pipe'), tr('开始', 'start'), tr('用户', 'customers'),
      tr('重要用户', 'critical')], rows, { 'data-role': 'shutdown-list' })
      : el('p', { class: 'muted' }, tr('还没有关阀计划：可在关阀工具中制定。', 'No shutdowns yet: plan one from the Shutoff tool.')),
  ], 'shutdowns', listPanel);
}

/** One shutdown's record. */
export async function open(id) {
  return guard(tr('关阀计划', 'Shutdown'), async () => show(await getJSON(`/shutdowns/${id}`)));
}

function valveRows(r) {
  const crew = r.status === 'executing' && can('edit');
  return r.valves.map((v) => ({
    attrs: { dataset: { valve: v.id, state: v.state }, class: v.needed ? '' : 'muted' },
    cells: [String(v.order), v.id, valveWord(v.state) + (v.needed ? '' : tr('（不需要）', ' (not needed)')),
      v.likely_to_fail ? el('span', { class: 'badge danger', title: tr(v.likely_reason_zh || v.likely_reason || '', v.likely_reason || '') }, tr('易失效', 'likely to fail')) : '',
      v.added_for ? tr(`替代 ${v.added_for}`, `for ${v.added_for}`) : '',
      crew && v.needed && v.state === 'pending' ? el('span', {},
        el('button', { class: 'primary', 'data-action': 'closed', style: BIG, onclick: () => mark(r.id, v.id, 'closed') }, tr('已关闭', 'Closed')),
        ' ',
        el('button', { 'data-action': 'failed', style: BIG, onclick: () => mark(r.id, v.id, 'failed') }, tr('失败', 'Failed'))) : ''],
  }));
}

function conflictList(r) {
  return el('ul', { 'data-role': 'conflicts' }, r.conflicts.map((c) => el('li', { class: 'critical' },
    tr(`与 #${c.shutdown} 冲突（${c.kinds.join('、')}）：多停 ${c.extra_customers.length} 个用户（重要用户 ` +
      `${c.extra_critical_customers.length} 个），多停 ${c.extra_pipes.length} 条管段；共用 ${c.shared_pipes.length} 条管段、` +
      `${c.shared_valves.length} 个阀门`,
    `Conflicts with #${c.shutdown} (${c.kinds.join(', ')}): ` +
    `${c.extra_customers.length} extra customers (${c.extra_critical_customers.length} critical), ` +
    `${c.extra_pipes.length} extra pipes; shared ${c.shared_pipes.length} pipes, ${c.shared_valves.length} valves`))));
}

function show(r) {
  state.record = r;
  const moves = can('edit') ? (MOVES[r.status] || []) : [];
  const customers = r.customers.map((c) => ({
    attrs: { class: c.critical ? 'critical' : '', dataset: { customer: c.id } },
    cells: [c.critical ? el('span', { class: 'badge danger' }, tr('重要', 'critical')) : '', c.id, text(c.name), text(c.kind)],
  }));
  showPanel(`${tr('关阀计划', 'Shutdown')} #${r.id} ${status(r.status)}`, [
    el('p', { 'data-role': 'shutdown-summary', 'data-status': r.status }, tr(
      `${status(r.status)}：管段 ${r.pipe}；计划 ${when(r.planned_start)} – ${when(r.planned_end)}` +
      (r.actual_start ? `；开始于 ${when(r.actual_start)}` : '') + (r.actual_end ? `；结束于 ${when(r.actual_end)}` : '') +
      (r.reason ? `；${r.reason}` : '') + `。${r.customer_count} 个用户，重要用户 ${r.critical_count} 个，` +
      `${r.hydrant_count} 个消火栓停用。`,
      `${status(r.status)}: pipe ${r.pipe}; planned ${when(r.planned_start)} – ${when(r.planned_end)}` +
      (r.actual_start ? `; started ${when(r.actual_start)}` : '') + (r.actual_end ? `; ended ${when(r.actual_end)}` : '') +
      (r.reason ? `; ${r.reason}` : '') + `. ${r.customer_count} customers, ${r.critical_count} critical, ` +
      `${r.hydrant_count} hydrants out of service.`)),
    moves.length ? el('div', { class: 'actions', 'data-role': 'shutdown-moves' }, moves.map((m) =>
      el('button', { 'data-move': m, style: BIG, onclick: () => move(r.id, m) }, tr(...MOVE_LABEL[m])))) : null,
    r.conflicts && r.conflicts.length ? section(tr(`冲突（${r.conflicts.length}）`, `Conflicts (${r.conflicts.length})`), conflictList(r)) : null,
    section(tr('关阀清单', 'Valves to close'), table(['#', tr('阀门', 'valve'), tr('状态', 'state'), '', '', ''], valveRows(r),
      { 'data-role': 'valve-checklist' })),
    r.hydrants.length ? section(tr(`消火栓停用（${r.hydrants.length}）`, `Hydrants out of service (${r.hydrants.length})`),
      el('ul', { 'data-role': 'hydrants' }, r.hydrants.map((h) => el('li', {}, h.id)))) : null,
    section(tr(`通知用户（${r.customers.length}）`, `Customers to notify (${r.customers.length})`),
      r.customers.length ? table(['', tr('编号', 'id'), tr('名称', 'name'), tr('类型', 'kind')], customers, { 'data-role': 'shutdown-customers' })
        : el('p', { class: 'muted' }, tr('无。', 'None.')),
      el('button', { class: 'small', onclick: () => downloadCsv(r.id) }, 'CSV'), ' ',
      el('button', { class: 'small', 'data-action': 'work-order', onclick: () => guard(tr('作业单', 'The work order'),
        () => download(`/shutdowns/${r.id}/workorder.pdf`, `shutdown-${r.id}-work-order.pdf`)) }, tr('作业单 PDF', 'Work order PDF'))),
    section(tr('记录', 'History'), el('ul', { class: 'notes' }, r.events.map((e) =>
      el('li', { dataset: { action: e.action } }, `${when(e.at)} ${e.by}: ${named('shutdown_action', e.action)}` +
        `${e.valve_id ? ' ' + e.valve_id : ''}${e.note ? ' – ' + e.note : ''}`)))),
    el('div', { class: 'actions' }, el('button', { onclick: () => openList() }, tr('← 全部关阀计划', '← All shutdowns'))),
  ], 'shutdowns', () => show(r));
  const marks = [...r.outage_pipes.map((p) => [p, COLOURS.outage]), ...r.isolated_pipes.map((p) => [p, COLOURS.isolated]),
    ...r.valves.filter((v) => v.node).map((v) => [v.node, COLOURS[v.state]])];
  if (marks.length) setMarks(marks); else clearMarks();
  return r;
}

async function move(id, m) {
  return guard(tr('关阀计划', 'Shutdown'), async () => show(await postJSON(`/shutdowns/${id}/${m}`, {})));
}

async function mark(id, valve, valveState) {
  return guard(tr('阀门', 'Valve'), async () => {
    const r = show(await postJSON(`/shutdowns/${id}/valves/${enc(valve)}`, { state: valveState }));
    if (valveState === 'failed') toast(tr(`${valve} 失败：外一圈阀门已加入清单`, `${valve} failed: the next ring is added to the checklist`), 'info');
    return r;
  });
}

async function downloadCsv(id) {
  return guard(tr('用户 CSV', 'Customers CSV'), () => download(`/shutdowns/${id}/customers.csv`, `shutdown-${id}-customers.csv`));
}

/** A shutdown of `pipe` planned from the Shutoff tool: forecast start and end, reason. */
export function planForm(pipe) {
  return planPanel(pipe);
}

/** The plan form's panel (drawn again on the language switch, what was typed kept). */
function planPanel(pipe) {
  const start = el('input', { type: 'datetime-local', name: 'start', required: true });
  const end = el('input', { type: 'datetime-local', name: 'end', required: true });
  const reason = el('input', { type: 'text', name: 'reason', maxlength: 200, placeholder: tr('原因', 'reason') });
  const form = el('form', { 'data-role': 'shutdown-plan', onsubmit: (e) => {
    e.preventDefault();
    plan({ pipe, start: new Date(start.value).toISOString(), end: new Date(end.value).toISOString(),
      reason: reason.value || null });
  } },
  el('label', {}, tr('开始 ', 'start '), start), el('label', {}, tr(' 结束 ', ' end '), end), el('label', {}, ' ', reason),
  el('button', { type: 'submit', class: 'primary', style: BIG }, tr('计划关阀', 'Plan')));
  showPanel(tr(`计划关阀：${pipe}`, `Plan a shutdown of ${pipe}`), [form], 'shutdowns', () => planPanel(pipe));
  return form;
}

/** Plan a shutdown ({pipe, start, end, reason}) and show its record, with its conflicts. */
export async function plan(body) {
  return guard(tr('计划关阀', 'Plan a shutdown'), async () => {
    const r = show(await postJSON('/shutdowns', body));
    if (r.conflicts.length) toast(tr(`与其他关阀计划有 ${r.conflicts.length} 处冲突`, `${r.conflicts.length} conflict(s) with other shutdowns`), 'error');
    return r;
  });
}

export function init() {
  const b = $('#shutdowns-toggle');
  if (b) b.addEventListener('click', () => openList());
}

export function shutdownsState() {
  return state;
}
