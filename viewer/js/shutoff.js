// Shutoff (关阀分析, 二次关阀): click a burst pipe -> the valves to close, in order, highlighted
// and numbered; the isolated and cut-off pipes coloured; the customers who lose supply,
// critical first. A valve marked as failed re-runs the analysis: the next ring appears.

/* global Cesium */

import { can, download, execute } from './api.js';
import { busy, el, guard, num, section, showPanel, table, toast } from './ui.js';
import { showFeature } from './inspect.js';
import { groundHeight, flyToBox } from './scene.js';
import { toLonLat } from './geo.js';
import { clearMarks, overlay, register, setMarks } from './tools.js';
import { addChip, removeChip } from './chips.js';
import { MARK_WHITE, PRESSURISED } from './style.js';
import { planForm } from './shutdowns.js';
import { named, tr } from './i18n.js';

export const SHUTOFF_COLOURS = {
  burst: MARK_WHITE,
  isolated: '#ff2d2d',
  outage: '#ff9f1a',
  valve: '#ffe600', // yellow: not the cyan of water pipes
  failed: '#8a2be2',
};

const state = { pipe: null, failed: [], result: null, layer: null };

function layer() {
  if (!state.layer) state.layer = overlay('shutoff');
  return state.layer;
}

function legend() {
  const item = (css, label) => el('span', { class: 'legend-item' }, el('i', { class: 'swatch', style: { background: css } }), label);
  return el('p', { class: 'legend-inline' },
    item(SHUTOFF_COLOURS.valve, tr('需关闭的阀门', 'valve to close')), item(SHUTOFF_COLOURS.failed, tr('失效阀门', 'failed valve')),
    item(SHUTOFF_COLOURS.isolated, tr('关断管段', 'isolated')), item(SHUTOFF_COLOURS.outage, tr('停水管段', 'cut off (no supply)')));
}

async function drawValves(r) {
  const ds = layer();
  ds.entities.removeAll();
  // Labels that would overprint each other when zoomed out gather into one cluster mark.
  ds.clustering.enabled = true;
  ds.clustering.pixelRange = 28;
  ds.clustering.minimumClusterSize = 2;
  const valves = r.valves.filter((v) => Number.isFinite(v.x));
  const failed = r.failed_valves.filter((v) => Number.isFinite(v.x));
  const all = [...valves, ...failed];
  if (!all.length) return;
  const lonlat = await toLonLat(all.map((v) => [v.x, v.y]));
  const lons = lonlat.map((p) => p[0]);
  const lats = lonlat.map((p) => p[1]);
  all.forEach((v, i) => {
    const [lon, lat] = lonlat[i];
    const isFailed = i >= valves.length;
    const h = groundHeight(lon, lat);
    ds.entities.add({
      id: `shutoff-valve-${v.id}-${isFailed ? 'failed' : 'close'}`,
      position: Cesium.Cartesian3.fromDegrees(lon, lat, h + 2.0),
      point: { pixelSize: 11, color: Cesium.Color.fromCssColorString(isFailed ? SHUTOFF_COLOURS.failed : SHUTOFF_COLOURS.valve),
        outlineColor: Cesium.Color.BLACK, outlineWidth: 2, disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: { text: isFailed ? `✕ ${v.id}` : `${v.order}  ${v.id}`, font: '13px sans-serif', fillColor: Cesium.Color.WHITE,
        outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        pixelOffset: new Cesium.Cartesian2(10, -10), horizontalOrigin: Cesium.HorizontalOrigin.LEFT,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
      polyline: { positions: [Cesium.Cartesian3.fromDegrees(lon, lat, h - 3.0), Cesium.Cartesian3.fromDegrees(lon, lat, h + 2.0)],
        width: 2, material: Cesium.Color.fromCssColorString(isFailed ? SHUTOFF_COLOURS.failed : SHUTOFF_COLOURS.valve) },
    });
  });
  return { west: Math.min(...lons), east: Math.max(...lons), south: Math.min(...lats), north: Math.max(...lats) };
}

function mark(r) {
  const marks = [];
  for (const id of r.outage_pipes) marks.push([id, SHUTOFF_COLOURS.outage]);
  for (const id of r.isolated_pipes) marks.push([id, SHUTOFF_COLOURS.isolated]);
  for (const v of r.valves) marks.push([v.node, SHUTOFF_COLOURS.valve]);
  for (const v of r.failed_valves) marks.push([v.node, SHUTOFF_COLOURS.failed]);
  if (r.pipe) marks.push([r.pipe, SHUTOFF_COLOURS.burst]);
  setMarks(marks);
}

function toggleFailed(valveId) {
  const i = state.failed.indexOf(valveId);
  if (i >= 0) state.failed.splice(i, 1);
  else state.failed.push(valveId);
  return run(state.pipe, state.failed);
}

/** Fly to a valve (or any feature) and show it, from the list. */
function zoomTo(kind, id) {
  return el('button', { class: 'small', 'data-action': 'zoom', title: tr('定位', 'Zoom to'),
    onclick: () => showFeature(kind, String(id), null, { fly: true }) }, tr('定位', 'Zoom to'));
}

function render(r) {
  const valveRows = r.valves.map((v) => ({
    attrs: { dataset: { valve: v.id, order: String(v.order) } },
    cells: [String(v.order), v.id, v.road || '–', v.depth_m == null ? '–' : `${num(v.depth_m, 2)} m`,
      el('span', {}, v.kind ? named('appurtenance', v.kind) : '–', v.likely_to_fail ? ' ' : null, v.likely_to_fail
        ? el('span', { class: 'badge danger', 'data-likely': v.id, title: tr(v.likely_reason_zh || v.likely_reason || '', v.likely_reason || '') }, tr('易失效', 'likely to fail')) : null),
      v.added_for ? tr(`替代 ${v.added_for}`, `for ${v.added_for}`) : '–',
      el('span', { class: 'nowrap' }, zoomTo('node', v.node), ' ',
        el('button', { class: 'small', 'data-action': 'fail', onclick: () => toggleFailed(v.id),
          title: tr('此阀关不动：改关外一圈阀门', 'This valve will not turn: close the next ring instead') }, tr('失效？', 'Failed?')))],
  }));
  const failedRows = r.failed_valves.map((v) => ({
    attrs: { dataset: { failed: v.id } },
    cells: [v.id, v.road || '–', named('failed_reason', v.reason),
      state.failed.includes(v.id)
        ? el('button', { class: 'small', onclick: () => toggleFailed(v.id) }, tr('可以关闭', 'Works after all')) : '–'],
  }));
  const customers = r.customers.map((c) => ({
    attrs: { class: c.critical ? 'critical' : '', dataset: { customer: c.id } },
    cells: [c.critical ? el('span', { class: 'badge danger' }, tr('重要用户', 'critical')) : '', c.id, c.name || '–', c.kind || '–'],
  }));
  const isolated = r.isolated_pipes.map((id) => ({ attrs: { dataset: { pipe: id } },
    cells: [id, id === r.pipe ? tr('爆管', 'burst') : '', zoomTo('pipe', id)] }));
  showPanel(tr(`关阀分析：${r.pipe || r.node} 爆管`, `Shutoff: burst on ${r.pipe || r.node}`), [
    // The crew's actions first, above the lists.
    el('div', { class: 'actions', 'data-role': 'shutoff-actions' },
      el('button', { onclick: () => clear() }, tr('清除', 'Clear')),
      r.pipe ? el('button', { 'data-action': 'work-order', title: tr('关阀作业单 PDF（A4，手机可读）', 'The crew\'s work order PDF (A4, phone)'),
        onclick: () => guard(tr('作业单', 'The work order'), () => download('/processes/shutoff/execution', `work-order-${r.pipe}.pdf`,
          { method: 'POST', json: { inputs: { pipe: r.pipe, failed_valves: state.failed } }, query: { f: 'pdf' } })) },
      tr('作业单 PDF', 'Work order PDF')) : null,
      r.pipe && can('edit') ? el('button', { 'data-action': 'plan-shutdown', onclick: () => planForm(r.pipe),
        title: tr('此管段的计划关阀方案：通知、执行、恢复', 'A planned shutdown of this pipe: notify, execute, restore') }, tr('计划关阀', 'Plan a shutdown')) : null,
      state.failed.length ? el('button', { onclick: () => { state.failed = []; run(state.pipe, []); } }, tr('重置失效阀门', 'Reset failed valves')) : null),
    el('p', { 'data-role': 'shutoff-summary' },
      tr(`${named('utility', r.utility)}：关闭 ${r.valves.length} 个阀门（先关水源侧）。关断 ${r.isolated_pipes.length} 条管段，` +
        `${num(r.length_m, 0)} m，需排空 ${num(r.volume_m3, 1)} m³；另有 ${r.outage_pipes.length} 条管段停水（${num(r.outage_length_m, 0)} m）；` +
        `${r.customers.length} 个用户停水，其中重要用户 ${r.critical_customers.length} 个。`,
      `${named('utility', r.utility)}: close ${r.valves.length} valve${r.valves.length === 1 ? '' : 's'}` +
      ` (source side first). Isolated ${r.isolated_pipes.length} pipes, ${num(r.length_m, 0)} m, ` +
      `${num(r.volume_m3, 1)} m³ to drain; cut off ${r.outage_pipes.length} more pipes (${num(r.outage_length_m, 0)} m); ` +
      `${r.customers.length} customers without supply, ${r.critical_customers.length} critical.`)),
    legend(),
    r.notes.length ? el('ul', { class: 'notes' }, r.notes.map((n) => el('li', {}, n))) : null,
    section(tr('关阀顺序', 'Valves to close, in order'),
      r.valves.length ? table(['#', tr('阀门', 'valve'), tr('道路', 'road'), tr('埋深', 'depth'), tr('类型', 'kind'), tr('追加', 'added'), ''],
        valveRows, { 'data-role': 'valve-order' })
        : el('p', { class: 'muted' }, tr('没有阀门能关断此管段。', 'No valve can cut this segment off.'))),
    r.failed_valves.length ? section(tr('失效阀门（二次关阀）', 'Failed valves (second ring)'),
      table([tr('阀门', 'valve'), tr('道路', 'road'), tr('原因', 'why'), ''], failedRows, { 'data-role': 'failed-valves' })) : null,
    section(tr(`关断管段（${r.isolated_pipes.length}）`, `Isolated pipes (${r.isolated_pipes.length})`),
      table([tr('管段', 'pipe'), '', ''], isolated, { 'data-role': 'isolated-pipes' })),
    section(tr(`停水用户（${r.customers.length}）`, `Customers without supply (${r.customers.length})`),
      r.customers.length ? table(['', tr('编号', 'id'), tr('名称', 'name'), tr('类型', 'kind')], customers, { 'data-role': 'customers' })
        : el('p', { class: 'muted' }, tr('无。', 'None.'))),
  ], 'shutoff', () => render(r));
}

/** Run the shutoff for a pipe with the given failed valves; draw and list the result. */
export async function run(pipe, failed = []) {
  state.pipe = pipe;
  state.failed = [...failed];
  showPanel(tr(`关阀分析：${pipe} 爆管`, `Shutoff: burst on ${pipe}`), busy(tr('正在查找需关闭的阀门…', 'Finding the valves to close…')), 'shutoff');
  return guard(tr('关阀分析', 'Shutoff'), async () => {
    const r = await execute('shutoff', { pipe, failed_valves: state.failed });
    state.result = r;
    render(r);
    mark(r);
    addChip('shutoff', [`关阀结果: ${pipe}`, `Shutoff: ${pipe}`], clear); // × clears it (chips.js)
    const box = await drawValves(r);
    if (box) {
      // At least 60 m across: one valve alone would give no extent.
      const pad = 0.0004;
      flyToBox(box.west - pad, box.south - pad, box.east + pad, box.north + pad);
    }
    return r;
  });
}

export function clear() {
  state.pipe = null;
  state.failed = [];
  state.result = null;
  if (state.layer) state.layer.entities.removeAll();
  clearMarks();
  removeChip('shutoff');
}

export function shutoffState() {
  return state;
}

register({
  id: 'shutoff',
  get label() { return tr('关阀', 'Shutoff'); },
  get hint() { return tr('关阀分析：点击爆管的管段（给水、燃气或热力）。按 Esc 结束。', 'Shutoff: click the burst pipe (water, gas or heat). Esc to stop.'); },
  run,
  click(pick) {
    if (pick.kind !== 'pipe') {
      toast(tr('请点击管段：给水、燃气或热力管网中爆管的管段', 'Click a pipe: the burst pipe of a water, gas or heat network'), 'info');
      return;
    }
    if (!PRESSURISED.has(pick.props.utility)) {
      toast(tr(`${pick.props.id} 属于${named('utility', pick.props.utility)}：只有给水、燃气和热力管网有阀门可关`,
        `${pick.props.id} is ${named('utility', pick.props.utility)}: only water, gas and heat networks have valves to close`), 'info');
      return;
    }
    run(String(pick.props.id), []);
  },
  stop() {},
  leave: clear,
});
