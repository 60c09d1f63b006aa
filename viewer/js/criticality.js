// Criticality map (关阀影响): pipes coloured by how many customers lose supply when their segment
// is shut off, from the stored results (GET /criticality). The worst segments are drawn in a
// sequential ramp, the rest of the network faded. Toggled from the layers panel; a user who
// may analyse recomputes stale results as a job (POST /criticality/jobs).

import { can, getJSON, postJSON } from './api.js';
import { $, el, guard, num, toast, when } from './ui.js';
import { onLang, tr } from './i18n.js';
import { clearMarks, setMarks } from './tools.js';

/** Customers cut off (用户数), lower bounds of the classes, and their colours (light to dark). */
export const CLASSES = [
  { min: 0, label: '0', css: '#fee391' },
  { min: 1, label: '1–9', css: '#fec44f' },
  { min: 10, label: '10–49', css: '#fe9929' },
  { min: 50, label: '50–199', css: '#ec7014' },
  { min: 200, label: '≥ 200', css: '#b30000' },
];
/** How many of the worst segments are drawn. */
const TOP = 500;

const state = { on: false, result: null, counts: null };

export function classOf(customers) {
  let k = 0;
  CLASSES.forEach((c, i) => { if (customers >= c.min) k = i; });
  return k;
}

async function show() {
  const r = await getJSON('/criticality', { top: TOP });
  const marks = [];
  const counts = CLASSES.map(() => 0);
  for (const s of r.segments) {
    const k = classOf(s.outage.customers);
    counts[k] += s.pipes.length;
    for (const p of s.pipes) marks.push([p, CLASSES[k].css]);
  }
  state.result = r;
  state.counts = counts;
  if (state.on) setMarks(marks, true);
  render();
  return r;
}

async function recompute() {
  const { jobID } = await postJSON('/criticality/jobs');
  toast(tr('关阀影响：正在重新计算每条管段的关阀影响…', 'Shutoff impact: recomputing the criticality of every segment …'));
  for (;;) {
    await new Promise((resolve) => { setTimeout(resolve, 500); });
    const doc = await getJSON(`/jobs/${jobID}`);
    if (doc.status === 'failed') throw new Error(doc.message);
    if (doc.status === 'successful') break;
  }
  return show();
}

function legend() {
  return el('ul', { class: 'legend', 'data-role': 'criticality-legend' }, CLASSES.map((c, i) => el('li', {},
    el('i', { class: 'swatch', style: { background: c.css } }), el('span', { class: 'name' }, tr(`${c.label} 户`, `${c.label} customers`)),
    state.counts ? el('span', { class: 'detail' }, tr(`${num(state.counts[i], 0)} 条管段`, `${num(state.counts[i], 0)} pipes`)) : null)));
}

function status() {
  const s = state.result?.state;
  if (!s) return null;
  if (!s.computed) return el('p', { class: 'muted small' }, tr('尚未计算。', 'Not computed yet.'));
  const at = when(s.computed_at);
  return el('p', { class: 'muted small', 'data-role': 'criticality-status' },
    tr(`${num(s.segments, 0)} 条管段，显示影响最大的 ${TOP} 条；计算于 ${at}${s.stale ? '（已过期）' : ''}`,
      `${num(s.segments, 0)} segments, worst ${TOP} shown; computed ${at}${s.stale ? ' — stale' : ''}`));
}

function render() {
  const root = $('#criticality-layer');
  if (!root) return;
  const box = el('input', { type: 'checkbox', checked: state.on, dataset: { role: 'criticality-toggle' } });
  box.addEventListener('change', () => guard(tr('关阀影响', 'Criticality'), () => toggle(box.checked)));
  const stale = state.result?.state?.stale;
  root.replaceChildren(...[ // replaceChildren would write a null as the text "null"
    el('h3', {}, tr('关阀影响', 'Shutoff impact')),
    el('label', { class: 'toggle' }, box, tr('按停水用户数着色', 'Colour pipes by customers cut off')),
    state.on ? legend() : null,
    state.on ? status() : null,
    state.on && stale && can('analyse')
      ? el('div', { class: 'actions' }, el('button', { onclick: () => guard(tr('关阀影响', 'Criticality'), recompute) },
        tr('重新计算', 'Recompute')))
      : null,
  ].filter(Boolean));
}

/** Show or hide the map; returns the stored answer shown. */
export async function toggle(on) {
  state.on = on;
  if (!on) {
    clearMarks();
    render();
    return null;
  }
  return show();
}

export function criticalityState() {
  return { on: state.on, result: state.result, counts: state.counts };
}

export function init() {
  render();
  onLang(() => render());
}
