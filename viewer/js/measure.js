// Measure: the distance between two clicks (on pipes or the ground), and the depth below
// the ground of a point on a pipe (the survey's ground there, from the server).

/* global Cesium */

import { attributes, el, guard, num, showPanel, toast } from './ui.js';
import { groundHeight, toCartographic } from './scene.js';
import { distances, toTwin } from './geo.js';
import { overlay, register } from './tools.js';
import { named, tr } from './i18n.js';

const state = { first: null, layer: null, last: null, depthLabel: null };

function layer() {
  if (!state.layer) state.layer = overlay('measure');
  return state.layer;
}

const labelStyle = {
  font: '14px sans-serif', fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
  style: Cesium.LabelStyle.FILL_AND_OUTLINE, showBackground: true,
  backgroundColor: Cesium.Color.fromCssColorString('#1d2127').withAlpha(0.8),
  disableDepthTestDistance: Number.POSITIVE_INFINITY, pixelOffset: new Cesium.Cartesian2(0, -18),
};

function dot(position, css = '#ffd60a') {
  return layer().entities.add({ position, point: { pixelSize: 9, color: Cesium.Color.fromCssColorString(css),
    outlineColor: Cesium.Color.BLACK, outlineWidth: 1, disableDepthTestDistance: Number.POSITIVE_INFINITY } });
}

/** The distance between two points (Cartesian3): drawn and listed. */
export function measureDistance(a, b) {
  const d = distances(a, b);
  const mid = Cesium.Cartesian3.midpoint(a, b, new Cesium.Cartesian3());
  layer().entities.add({
    polyline: { positions: [a, b], width: 3, material: Cesium.Color.fromCssColorString('#ffd60a'),
      depthFailMaterial: Cesium.Color.fromCssColorString('#ffd60a').withAlpha(0.5) },
  });
  dot(b);
  layer().entities.add({ position: mid, label: { ...labelStyle, text: `${num(d.straight, 2)} m` } });
  state.last = d;
  distancePanel(d);
  return d;
}

/** The distance's panel (drawn again on the language switch). */
function distancePanel(d) {
  showPanel(tr('量距', 'Measure distance'), [
    attributes([
      [tr('空间距离', 'Distance (3D)'), `${num(d.straight, 3)} m`],
      [tr('水平距离', 'Horizontal'), `${num(d.horizontal, 3)} m`],
      [tr('高差', 'Height difference'), `${num(d.vertical, 3)} m`],
    ]),
    el('p', { class: 'muted' }, tr('再点击两点可重新量测。点会吸附到光标下的管线，否则落在地面上。',
      'Click two more points for a new measurement. Points snap to pipes under the cursor, else the ground.')),
    el('div', { class: 'actions' }, el('button', { onclick: () => clear() }, tr('清除', 'Clear'))),
  ], 'measure', () => distancePanel(d));
}

/** The depth below the ground of a point on a pipe (Cartesian3), with the pipe's surveyed depth. */
export async function measureDepth(point, props) {
  const c = toCartographic(point);
  return guard(tr('埋深', 'Depth'), async () => {
    const t = await toTwin([[c.lon, c.lat, c.height]], true);
    const [e, n, z] = t.points[0];
    const ground = t.ground_z[0];
    const depth = ground === null ? null : ground - z;
    layer().entities.removeAll();
    state.depthLabel = null;
    const p = Cesium.Cartesian3.fromDegrees(c.lon, c.lat, c.height);
    dot(p, '#00e0ff');
    if (ground !== null) {
      const top = Cesium.Cartesian3.fromDegrees(c.lon, c.lat, c.height + depth);
      layer().entities.add({ polyline: { positions: [p, top], width: 2, material: Cesium.Color.fromCssColorString('#00e0ff'),
        depthFailMaterial: Cesium.Color.fromCssColorString('#00e0ff').withAlpha(0.6) } });
      state.depthLabel = layer().entities.add({ position: p, label: { ...labelStyle, text: '' } });
    }
    const result = { easting: e, northing: n, elevation: z, ground_z: ground, depth_m: depth };
    state.last = result;
    depthPanel(result, props);
    return result;
  });
}

/** The depth's panel (drawn again on the language switch). */
function depthPanel(result, props) {
  const { easting: e, northing: n, elevation: z, ground_z: ground, depth_m: depth } = result;
  if (state.depthLabel && depth !== null) { // the label on the map follows the language too
    state.depthLabel.label.text = tr(`埋深 ${num(depth, 2)} m`, `${num(depth, 2)} m below ground`);
  }
  showPanel(tr('埋深', 'Depth below ground'), [
    attributes([
      [tr('点位 (E, N)', 'Point (E, N)'), `${num(e, 2)}, ${num(n, 2)}`],
      [tr('该点高程', 'Elevation of the point'), `${num(z, 3)} m`],
      [tr('该处地面高程', 'Ground there'), ground === null ? tr('附近无测量地面', 'no survey ground nearby') : `${num(ground, 3)} m`],
      [tr('埋深', 'Depth below ground'), depth === null ? '–' : `${num(depth, 2)} m`],
      props ? [tr('管段', 'Pipe'), `${props.id} (${named('utility', props.utility)}, ${props.size || ''})`] : undefined,
      props && props.depth_m !== undefined ? [tr('管段测量埋深', 'Surveyed depth of the pipe'),
        tr(`${num(props.depth_m, 2)} m（两端平均）`, `${num(props.depth_m, 2)} m (mean of its ends)`)] : undefined,
    ]),
    el('p', { class: 'muted' }, tr('高程为正常高（1985 国家高程基准）；地面在测量点之间插值。',
      'Heights are normal heights (1985 datum); the ground is interpolated between the survey points.')),
  ], 'measure', () => depthPanel(result, props));
}

export function clear() {
  state.first = null;
  state.depthLabel = null;
  if (state.layer) state.layer.entities.removeAll();
}

register({
  id: 'measure',
  get label() { return tr('量距', 'Distance'); },
  get hint() { return tr('量距：点击两点（管线或地面）。按 Esc 结束。', 'Distance: click two points (on pipes or the ground). Esc to stop.'); },
  start() {
    state.first = null;
  },
  click(pick) {
    const p = pick.surface || pick.ground;
    if (!p) {
      toast(tr('请点击管线或地面', 'Click on a pipe or the ground'), 'info');
      return;
    }
    if (!state.first) {
      layer().entities.removeAll();
      state.first = p;
      dot(p);
      return;
    }
    const a = state.first;
    state.first = null;
    measureDistance(a, p);
  },
  stop() {
    state.first = null;
  },
  leave: clear,
});

register({
  id: 'depth',
  get label() { return tr('埋深', 'Depth'); },
  get hint() { return tr('埋深：点击管线上的一点。按 Esc 结束。', 'Depth: click a point on a pipe. Esc to stop.'); },
  leave: clear,
  click(pick) {
    if (!pick.surface) {
      const ground = pick.ground ? toCartographic(pick.ground) : null;
      const h = ground ? num(groundHeight(ground.lon, ground.lat), 2) : null;
      toast(ground ? tr(`此处无管线：地面椭球高 ${h} m；请点击管线上的一点量取埋深`,
        `No pipe here: ground ${h} m (ellipsoidal); click a point on a pipe for its depth`)
        : tr('请点击管线上的一点', 'Click a point on a pipe'), 'info');
      return;
    }
    measureDepth(pick.surface, pick.kind === 'pipe' ? pick.props : null);
  },
});

export function measureState() {
  return state;
}
