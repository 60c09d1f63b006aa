// History (历史): the network as it stood at a date, and what changed between two dates.
//
// A slider runs over the twin's changes (GET /view/timeline: every import and edit, oldest
// first). The live 3D tiles are hidden and the pipes as of the chosen change are drawn as an
// overlay (the features API with datetime=, limited to the view's box); the changes between
// the "from" and "to" changes (GET /view/changes) are drawn over them: added green,
// retired/deleted red, changed amber (the old line dashed). Leaving the tool restores the live view.

/* global Cesium */

import { getJSON } from './api.js';
import { busy, el, guard, panelOwner, section, showPanel, table, when } from './ui.js';
import { flyToGeometry, world } from './scene.js';
import { activate, register } from './tools.js';
import { utilityCss } from './style.js';
import { onLang, tr } from './i18n.js';

export const CHANGE_COLOURS = { added: '#2ecc40', retired: '#ff2d2d', deleted: '#ff2d2d', changed: '#ffb000' };
const PIPES_LIMIT = 10000;

const state = {
  layer: null, timeline: null, from: 0, to: 0, pipes: null, changes: null, drawn: 0, busy: false, run: 0,
  tilesShown: null,
};

/** The overlay: one collection of polylines (drawn in the next frame; no entity batching). */
function layer() {
  if (!state.layer) state.layer = world.scene.primitives.add(new Cesium.PolylineCollection());
  return state.layer;
}

function solid(css, alpha = 1) {
  return Cesium.Material.fromType('Color', { color: Cesium.Color.fromCssColorString(css).withAlpha(alpha) });
}

/** A change's line: its colour with a white edge, so it stands apart from the pipes' own colours. */
function outlined(css) {
  return Cesium.Material.fromType('PolylineOutline', { color: Cesium.Color.fromCssColorString(css),
    outlineColor: Cesium.Color.WHITE, outlineWidth: 2 });
}

function changeName(change) {
  return { added: tr('新增', 'added'), retired: tr('废弃', 'retired'), deleted: tr('删除', 'deleted'),
    changed: tr('修改', 'changed') }[change] || change;
}

/** The view's box (CRS84 degrees) within the network's, or the network's. */
function viewBox() {
  const net = world.frame && world.frame.bbox;
  const r = world.camera && world.camera.computeViewRectangle(world.scene.globe.ellipsoid);
  if (!r) return net;
  const deg = Cesium.Math.toDegrees;
  const v = [deg(r.west), deg(r.south), deg(r.east), deg(r.north)];
  if (!net) return v;
  const box = [Math.max(v[0], net[0]), Math.max(v[1], net[1]), Math.min(v[2], net[2]), Math.min(v[3], net[3])];
  return box[0] < box[2] && box[1] < box[3] ? box : net;
}

function positions(coords) {
  const offset = world.frame ? world.frame.geoid_offset_m : 0;
  return Cesium.Cartesian3.fromDegreesArrayHeights(coords.flatMap(([lon, lat, z = 0]) => [lon, lat, z + offset]));
}

function lines(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'LineString') return [geometry.coordinates];
  if (geometry.type === 'MultiLineString') return geometry.coordinates;
  return [];
}

function drawPipes(lineSet, fc) {
  const materials = new Map();
  for (const f of fc.features) {
    const css = utilityCss(f.properties.utility);
    if (!materials.has(css)) materials.set(css, solid(css, 0.6)); // the past, a little faded
    for (const c of lines(f.geometry)) lineSet.add({ positions: positions(c), width: 3, material: materials.get(css), id: f.id });
  }
}

function drawChanges(lineSet, answer) {
  for (const f of answer.features) {
    const css = CHANGE_COLOURS[f.change] || '#ffffff';
    const shown = f.change === 'added' || f.change === 'changed' ? f.after : f.before;
    for (const c of lines(shown)) lineSet.add({ positions: positions(c), width: 9, material: outlined(css), id: f.id });
    if (f.change === 'changed' && (f.changed || []).includes('geom')) {
      const dash = Cesium.Material.fromType('PolylineDash', { color: Cesium.Color.fromCssColorString(css).withAlpha(0.8),
        dashLength: 12 });
      for (const c of lines(f.before)) lineSet.add({ positions: positions(c), width: 4, material: dash, id: f.id });
    }
  }
}

function tick(i) {
  const c = state.timeline.changes[i];
  return c ? `${when(c.at)} · ${c.op || c.kind} · ${c.by}` : '–';
}

function slider(name, label, value) {
  const n = state.timeline.changes.length;
  const out = el('output', { dataset: { role: `history-${name}-label` } }, tick(value));
  const input = el('input', { type: 'range', min: 0, max: Math.max(0, n - 1), step: 1, value,
    'aria-label': label, dataset: { role: `history-${name}` } });
  input.addEventListener('input', () => { out.textContent = tick(Number(input.value)); });
  input.addEventListener('change', () => show({ [name]: Number(input.value) }));
  return el('label', { class: 'slider history-slider' }, el('span', {}, label), input, out);
}

function legend() {
  const item = (css, label, dashed) => el('span', { class: 'legend-item' },
    el('i', { class: 'swatch', style: { background: css, borderStyle: dashed ? 'dashed' : 'solid' } }), label);
  return el('p', { class: 'legend-inline', dataset: { role: 'history-legend' } },
    item(CHANGE_COLOURS.added, tr('新增', 'added')), item(CHANGE_COLOURS.retired, tr('废弃/删除', 'retired/deleted')),
    item(CHANGE_COLOURS.changed, tr('修改（虚线为原位置）', 'changed (dashed: where it was)')));
}

function changeRows(answer) {
  return answer.features.map((f) => ({
    attrs: { dataset: { change: f.change, id: f.id } },
    cells: [el('span', {}, el('i', { class: 'swatch', style: { background: CHANGE_COLOURS[f.change] } }), changeName(f.change)),
      f.id, (f.changed || []).join(', ') || '–',
      el('button', { class: 'small', type: 'button', onclick: () => flyToGeometry(f.after || f.before) },
        tr('定位', 'Zoom'))],
  }));
}

function render() {
  const tl = state.timeline;
  if (!tl.changes.length) {
    showPanel(tr('历史', 'History'), el('p', {}, tr('此孪生库还没有任何变更。', 'The twin has no changes yet.')), 'history');
    return;
  }
  const ch = state.changes;
  const pipes = state.pipes;
  showPanel(tr('历史', 'History'), [
    el('p', { class: 'muted' }, tr(`管网自 ${when(tl.first)} 至 ${when(tl.latest)} 共 ${tl.total} 次变更（导入与编辑）。`,
      `${tl.total} changes (imports and edits) from ${when(tl.first)} to ${when(tl.latest)}.`)),
    slider('to', tr('显示此时的管网', 'Network as of'), state.to),
    slider('from', tr('对比起点', 'Changes since'), state.from),
    state.busy ? busy(tr('读取历史管网…', 'Reading the network as it stood…')) : null,
    pipes ? el('p', { dataset: { role: 'history-summary' } },
      tr(`视野内 ${pipes.numberReturned} 条管线（${when(tl.changes[state.to].at)} 时）`,
        `${pipes.numberReturned} pipes in view as of ${when(tl.changes[state.to].at)}`),
      pipes.numberMatched > pipes.numberReturned ? tr('；放大以显示全部', '; zoom in to see them all') : '') : null,
    legend(),
    ch ? section(tr(`变更（${ch.total}）`, `Changes (${ch.total})`),
      ch.features.length ? table([tr('变更', 'change'), tr('编号', 'id'), tr('修改项', 'what changed'), ''],
        changeRows(ch), { 'data-role': 'history-changes' })
        : el('p', { class: 'muted' }, tr('两个时间之间视野内无变更。', 'No change in view between the two times.'))) : null,
    el('div', { class: 'actions' },
      el('button', { type: 'button', onclick: () => show({}) }, tr('按当前视野刷新', 'Redraw for this view')),
      el('button', { type: 'button', class: 'primary', dataset: { role: 'history-live' },
        onclick: () => activate('inspect') }, tr('回到现在', 'Back to now'))),
  ], 'history');
}

/** Show the network as of change `to` and the changes since change `from` (indexes into the timeline). */
export async function show({ to = state.to, from = state.from } = {}) {
  const tl = state.timeline;
  if (!tl || !tl.changes.length) return null;
  const last = tl.changes.length - 1;
  state.to = Math.max(0, Math.min(last, to));
  state.from = Math.max(0, Math.min(state.to, from));
  const run = ++state.run;
  state.busy = true;
  render();
  return guard(tr('历史', 'History'), async () => {
    const box = viewBox();
    const bbox = box ? box.map((v) => v.toFixed(7)).join(',') : undefined;
    const at = tl.changes[state.to].at;
    let pipes;
    let changes;
    try {
      [pipes, changes] = await Promise.all([
        getJSON('/collections/pipes/items', { datetime: at, limit: PIPES_LIMIT, ...(bbox ? { bbox } : {}) }),
        getJSON('/view/changes', { from: tl.changes[state.from].at, to: at, ...(bbox ? { bbox } : {}) }),
      ]);
    } finally {
      if (run === state.run && state.timeline) {
        state.busy = false;
        render(); // no spinner left behind when a read failed
      }
    }
    if (run !== state.run) return null; // a later choice is on its way
    const lineSet = layer();
    lineSet.removeAll();
    drawPipes(lineSet, pipes);
    drawChanges(lineSet, changes);
    Object.assign(state, { pipes, changes, drawn: state.drawn + 1 });
    render();
    return historyState();
  });
}

async function open() {
  state.busy = true;
  showPanel(tr('历史', 'History'), busy(tr('读取变更时间表…', 'Reading the timeline…')), 'history');
  const run = state.run;
  const tl = await guard(tr('历史', 'History'), () => getJSON('/view/timeline'));
  if (!tl || run !== state.run) return; // failed, or the tool was left meanwhile
  state.timeline = tl;
  state.to = Math.max(0, tl.changes.length - 1);
  state.from = 0;
  if (world.tileset) {
    state.tilesShown = world.tileset.show;
    world.tileset.show = false; // the live network gives way to the one as of the date
  }
  await show({});
}

function leave() {
  state.run += 1;
  if (state.layer) state.layer.removeAll();
  if (world.tileset && state.tilesShown !== null) world.tileset.show = state.tilesShown;
  Object.assign(state, { timeline: null, pipes: null, changes: null, busy: false, tilesShown: null });
}

/** For tests: what is drawn. */
export function historyState() {
  const tl = state.timeline;
  return {
    open: Boolean(tl), from: state.from, to: state.to, drawn: state.drawn, busy: state.busy,
    at: tl && tl.changes[state.to] ? tl.changes[state.to].at : null,
    since: tl && tl.changes[state.from] ? tl.changes[state.from].at : null,
    changes: tl ? tl.changes.length : 0,
    tilesShown: world.tileset ? world.tileset.show : null,
    pipes: state.pipes ? state.pipes.features.map((f) => ({ id: f.id, coordinates: f.geometry.coordinates })) : [],
    highlights: state.changes ? state.changes.features.map((f) => ({ id: f.id, kind: f.kind, change: f.change,
      css: CHANGE_COLOURS[f.change], changed: f.changed })) : [],
    lines: state.layer ? state.layer.length : 0,
  };
}

onLang(() => { if (state.timeline && !state.busy && panelOwner() === 'history') render(); });

register({
  id: 'history',
  label: '历史',
  get hint() {
    return tr('历史：拖动时间滑块查看当时的管网与变更。Esc 返回现在。', 'History: drag the slider to see the network as of a date. Esc returns to now.');
  },
  start() { open(); },
  leave,
  click() {},
});

