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
import { MARK_WHITE, PRESSURISED, UTILITY } from './style.js';
import { planForm } from './shutdowns.js';

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
    item(SHUTOFF_COLOURS.valve, 'valve to close'), item(SHUTOFF_COLOURS.failed, 'failed valve'),
    item(SHUTOFF_COLOURS.isolated, 'isolated'), item(SHUTOFF_COLOURS.outage, 'cut off (no supply)'));
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
  return el('button', { class: 'small', 'data-action': 'zoom', title: '定位 Zoom to',
    onclick: () => showFeature(kind, String(id), null, { fly: true }) }, '定位');
}

function render(r) {
  const u = UTILITY[r.utility];
  const valveRows = r.valves.map((v) => ({
    attrs: { dataset: { valve: v.id, order: String(v.order) } },
    cells: [String(v.order), v.id, v.road || '–', v.depth_m == null ? '–' : `${num(v.depth_m, 2)} m`,
      el('span', {}, v.kind || '–', v.likely_to_fail ? ' ' : null, v.likely_to_fail
        ? el('span', { class: 'badge danger', 'data-likely': v.id, title: v.likely_reason || '' }, '易失效 likely to fail') : null),
      v.added_for ? `for ${v.added_for}` : '–',
      el('span', { class: 'nowrap' }, zoomTo('node', v.node), ' ',
        el('button', { class: 'small', 'data-action': 'fail', onclick: () => toggleFailed(v.id),
          title: 'This valve will not turn: close the next ring instead' }, 'Failed?'))],
  }));
  const failedRows = r.failed_valves.map((v) => ({
    attrs: { dataset: { failed: v.id } },
    cells: [v.id, v.road || '–', v.reason,
      state.failed.includes(v.id)
        ? el('button', { class: 'small', onclick: () => toggleFailed(v.id) }, 'Works after all') : '–'],
  }));
  const customers = r.customers.map((c) => ({
    attrs: { class: c.critical ? 'critical' : '', dataset: { customer: c.id } },
    cells: [c.critical ? el('span', { class: 'badge danger' }, 'critical') : '', c.id, c.name || '–', c.kind || '–'],
  }));
  const isolated = r.isolated_pipes.map((id) => ({ attrs: { dataset: { pipe: id } },
    cells: [id, id === r.pipe ? '爆管 burst' : '', zoomTo('pipe', id)] }));
  showPanel(`Shutoff: burst on ${r.pipe || r.node}`, [
    // The crew's actions first, above the lists.
    el('div', { class: 'actions', 'data-role': 'shutoff-actions' },
      el('button', { onclick: () => clear() }, 'Clear'),
      r.pipe ? el('button', { 'data-action': 'work-order', title: '关阀作业单 PDF: the crew\'s work order (A4, phone)',
        onclick: () => guard('The work order', () => download('/processes/shutoff/execution', `work-order-${r.pipe}.pdf`,
          { method: 'POST', json: { inputs: { pipe: r.pipe, failed_valves: state.failed } }, query: { f: 'pdf' } })) },
      '作业单 PDF') : null,
      r.pipe && can('edit') ? el('button', { 'data-action': 'plan-shutdown', onclick: () => planForm(r.pipe),
        title: 'A planned shutdown (关阀方案) of this pipe: notify, execute, restore' }, '计划关阀 Plan a shutdown') : null,
      state.failed.length ? el('button', { onclick: () => { state.failed = []; run(state.pipe, []); } }, 'Reset failed valves') : null),
    el('p', { 'data-role': 'shutoff-summary' },
      `${u ? u.en + ' ' + u.zh : r.utility}: close ${r.valves.length} valve${r.valves.length === 1 ? '' : 's'}` +
      ` (source side first). Isolated ${r.isolated_pipes.length} pipes, ${num(r.length_m, 0)} m, ` +
      `${num(r.volume_m3, 1)} m³ to drain; cut off ${r.outage_pipes.length} more pipes (${num(r.outage_length_m, 0)} m); ` +
      `${r.customers.length} customers without supply, ${r.critical_customers.length} critical.`),
    legend(),
    r.notes.length ? el('ul', { class: 'notes' }, r.notes.map((n) => el('li', {}, n))) : null,
    section('Valves to close, in order',
      r.valves.length ? table(['#', 'valve', '道路 road', '埋深 depth', 'kind', 'added', ''], valveRows, { 'data-role': 'valve-order' })
        : el('p', { class: 'muted' }, 'No valve can cut this segment off.')),
    r.failed_valves.length ? section('Failed valves (二次关阀)', table(['valve', '道路 road', 'why', ''], failedRows, { 'data-role': 'failed-valves' })) : null,
    section(`关断管段 Isolated pipes (${r.isolated_pipes.length})`,
      table(['pipe', '', ''], isolated, { 'data-role': 'isolated-pipes' })),
    section(`Customers without supply (${r.customers.length})`,
      r.customers.length ? table(['', 'id', 'name', 'kind'], customers, { 'data-role': 'customers' }) : el('p', { class: 'muted' }, 'None.')),
  ], 'shutoff');
}

/** Run the shutoff for a pipe with the given failed valves; draw and list the result. */
export async function run(pipe, failed = []) {
  state.pipe = pipe;
  state.failed = [...failed];
  showPanel(`Shutoff: burst on ${pipe}`, busy('Finding the valves to close…'), 'shutoff');
  return guard('Shutoff', async () => {
    const r = await execute('shutoff', { pipe, failed_valves: state.failed });
    state.result = r;
    render(r);
    mark(r);
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
}

export function shutoffState() {
  return state;
}

register({
  id: 'shutoff',
  label: 'Shutoff',
  hint: 'Shutoff: click the burst pipe (water, gas or heat). Esc to stop.',
  run,
  click(pick) {
    if (pick.kind !== 'pipe') {
      toast('Click a pipe: the burst pipe of a water, gas or heat network', 'info');
      return;
    }
    if (!PRESSURISED.has(pick.props.utility)) {
      toast(`${pick.props.id} is ${UTILITY[pick.props.utility]?.en || pick.props.utility}: only water, gas and heat networks have valves to close`, 'info');
      return;
    }
    run(String(pick.props.id), []);
  },
  stop() {},
  leave: clear,
});
