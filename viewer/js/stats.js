// Statistics (统计): bar charts of pipe length by utility, material, decade built, owner and
// status, from GET /stats, drawn with uPlot (npm `uplot`, its bars path builder). A click on a
// bar (or its row's button in the table under the chart) shows only those pipes in the 3D view:
// a utility through `display.hiddenUtilities` (as search does), the other dimensions through
// `display.only`; 显示全部 Show all resets.

import uPlot from '/uplot/uPlot.esm.js';
import { getJSON } from './api.js';
import { $, busy, el, guard, num, panelOwner, showPanel, table } from './ui.js';
import { decadeCss, display, materialCss, ownerCss, setOwners, UTILITIES, utilityCss } from './style.js';
import { restyle } from './tools.js';
import { renderLayers } from './layers.js';
import { named, tr } from './i18n.js';

/** The charts: the /stats dimension and its title, Chinese first. */
export const CHARTS = [
  { by: 'utility', get title() { return tr('管线类别', 'Utility'); } },
  { by: 'material', get title() { return tr('材质', 'Material'); } },
  { by: 'decade', get title() { return tr('建设年代', 'Decade built'); } },
  { by: 'owner', get title() { return tr('权属单位', 'Owner'); } },
  { by: 'status', get title() { return tr('状态', 'Status'); } },
];
const STATUS_CSS = { active: '#3d8bfd', abandoned: '#969696', planned: '#a0cbe8', proposed: '#f1ce63' };
const ROW_PX = 22;

const state = { tables: {}, plots: {}, filter: null };

function label(by, value) {
  if (value === null || value === undefined || value === '') return tr('不详', 'unknown');
  if (by === 'utility') return `${value} ${named('utility', value)}`;
  if (by === 'status') return named('status', value);
  if (by === 'decade') return tr(`${String(value).slice(0, 4)} 年代`, `${String(value).slice(0, 4)}s`);
  return String(value);
}

function barCss(by, value) {
  if (by === 'utility') return utilityCss(value);
  if (by === 'material') return materialCss(value);
  if (by === 'decade') return decadeCss(value ? Number(String(value).slice(0, 4)) : null);
  if (by === 'owner') return ownerCss(value);
  return STATUS_CSS[value] || '#7f7f7f';
}

/** The bars of one table: longest first, the decades in their order; values as /stats has them. */
function bars(by, rows) {
  const sorted = by === 'decade' ? rows.slice() : rows.slice().sort((a, b) => b.length_km - a.length_km);
  if (by === 'owner') setOwners(sorted.map((r) => r.owner)); // the layers panel's owner colours
  // the label in the language in use when it is read (the panel follows the 中/EN switch)
  return sorted.map((r) => ({ value: r[by] ?? '', get label() { return label(by, r[by]); }, km: r.length_km,
    pipes: r.segments, css: barCss(by, r[by]) }));
}

function chart(by, items, box) {
  const n = items.length;
  const width = Math.max(260, box.clientWidth || 380);
  const max = Math.max(...items.map((b) => b.km), 0.001);
  const plot = new uPlot({
    width, height: Math.max(90, n * ROW_PX + 40), legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x: { time: false, ori: 1, dir: -1, range: [-0.5, n - 0.5] }, y: { ori: 0, range: [0, max * 1.08] } },
    axes: [
      { scale: 'x', side: 3, size: 120, gap: 4, stroke: '#c8ced6', grid: { show: false }, ticks: { show: false },
        splits: () => items.map((_, i) => i), values: (u, splits) => splits.map((i) => items[i]?.label ?? '') },
      { scale: 'y', side: 2, stroke: '#9aa4af', grid: { stroke: '#39414b' }, values: (u, splits) => splits.map((v) => String(v)) },
    ],
    series: [{}, { label: 'km', paths: uPlot.paths.bars({ size: [0.7, 18], disp: {
      fill: { unit: 3, values: () => items.map((b) => b.css) },
      stroke: { unit: 3, values: () => items.map(() => '#ffffff55') } } }), points: { show: false } }],
  }, [items.map((_, i) => i), items.map((b) => b.km)], box);
  plot.over.style.cursor = 'pointer';
  plot.over.addEventListener('click', () => {
    const i = plot.cursor.idx;
    if (i !== null && i !== undefined && items[i]) showOnly(by, items[i]);
  });
  return plot;
}

function filterLine() {
  const f = state.filter;
  const all = el('button', { type: 'button', dataset: { role: 'stats-show-all' }, disabled: !f,
    onclick: () => showAll() }, tr('显示全部', 'Show all'));
  return el('p', { class: 'stats-filter', 'data-role': 'stats-filter' },
    f ? tr(`只显示 ${CHARTS.find((c) => c.by === f.by).title}：${f.label}。`,
      `Only these pipes are shown: ${CHARTS.find((c) => c.by === f.by).title} ${f.label}. `)
      : tr('点击柱条筛选三维视图。', 'Click a bar to show only those pipes. '), all);
}

function block(c) {
  const items = state.tables[c.by];
  const rows = items.map((b) => ({ attrs: { dataset: { by: c.by, value: b.value } },
    cells: [b.label, num(b.km, 3), String(b.pipes), el('button', { type: 'button', class: 'small',
      dataset: { role: 'stats-only' }, onclick: () => showOnly(c.by, b) }, tr('只显示', 'Only'))] }));
  return el('section', { class: 'block stats-chart', dataset: { by: c.by } },
    el('h3', {}, `${c.title} (km)`),
    el('div', { class: 'chart', 'data-role': 'stats-chart' }),
    el('details', {}, el('summary', {}, tr('数据表', 'Table')),
      table([tr('类别', 'value'), tr('长度 (km)', 'length km'), tr('管段数', 'pipes'), ''], rows)));
}

function render() {
  for (const p of Object.values(state.plots)) p.destroy();
  state.plots = {};
  const total = state.total;
  showPanel(tr('统计', 'Statistics'), [
    el('p', { 'data-role': 'stats-total' }, tr(`合计 ${num(total.length_km, 1)} km，${num(total.segments, 0)} 条管段（现状管网，不含已删除）。`,
      `Total ${num(total.length_km, 1)} km, ${num(total.segments, 0)} pipes (current network).`)),
    filterLine(),
    ...CHARTS.map(block),
  ], 'stats', render);
  for (const c of CHARTS) {
    const box = $(`.stats-chart[data-by="${c.by}"] .chart`);
    if (box && state.tables[c.by].length) state.plots[c.by] = chart(c.by, state.tables[c.by], box);
  }
}

/** Open the statistics panel: the five tables read afresh, charted. */
export async function openStats() {
  showPanel(tr('统计', 'Statistics'), busy(tr('正在读取统计…', 'Reading the statistics…')), 'stats');
  return guard(tr('统计', 'Statistics'), async () => {
    const answers = await Promise.all(CHARTS.map((c) => getJSON('/stats', { by: c.by })));
    CHARTS.forEach((c, i) => { state.tables[c.by] = bars(c.by, answers[i].rows); });
    state.total = answers[0].total;
    render();
    return statsState();
  });
}

/** Show only the pipes of one bar in the 3D view. */
export function showOnly(by, bar) {
  display.onlySubtype = null;
  if (by === 'utility') {
    display.only = null;
    display.hiddenUtilities = new Set(UTILITIES.map((u) => u.code).filter((code) => code !== bar.value));
  } else {
    display.hiddenUtilities = new Set();
    display.only = { property: by, values: [bar.value] };
  }
  state.filter = { by, value: bar.value, get label() { return bar.label; } };
  restyle();
  renderLayers();
  if (panelOwner() === 'stats') $('[data-role=stats-filter]').replaceWith(filterLine());
  return state.filter;
}

/** Show every pipe again (as before any bar was clicked or a utility searched). */
export function showAll() {
  display.hiddenUtilities = new Set();
  display.onlySubtype = null;
  display.only = null;
  state.filter = null;
  restyle();
  renderLayers();
  if (panelOwner() === 'stats') $('[data-role=stats-filter]').replaceWith(filterLine());
}

/** Where a bar is on the page (CSS px, its middle), for tests and automation. */
export function barAt(by, index) {
  const plot = state.plots[by];
  if (!plot) return null;
  const r = plot.over.getBoundingClientRect();
  const km = plot.data[1][index];
  return [r.left + plot.valToPos(km / 2, 'y'), r.top + plot.valToPos(index, 'x')];
}

/** What the charts show: per dimension the bars' values, labels and lengths (from the plots' data). */
export function statsState() {
  const charts = {};
  for (const c of CHARTS) {
    const items = state.tables[c.by] || [];
    const plot = state.plots[c.by];
    charts[c.by] = { values: items.map((b) => b.value), labels: items.map((b) => b.label),
      km: plot ? Array.from(plot.data[1]) : [], colours: items.map((b) => b.css) };
  }
  return { charts, filter: state.filter, total: state.total || null };
}

export function init() {
  const b = $('#stats-toggle');
  if (b) b.addEventListener('click', () => openStats());
}
