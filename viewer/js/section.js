// Cross-section (横断面): two clicks across a road -> the server's drawing (SVG, true scale)
// in the panel with the pipes it cuts, and in 3D the network cut open along that line
// (a clipping plane on the tileset) with the section plane drawn.

/* global Cesium */

import { execute } from './api.js';
import { busy, drawing, el, guard, num, section, showPanel, table, toast } from './ui.js';
import { groundHeight, toCartographic, world } from './scene.js';
import { toLonLat, toTwin } from './geo.js';
import { clearMarks, overlay, register, setMarks } from './tools.js';
import { addChip, removeChip } from './chips.js';
import { named, tr } from './i18n.js';
import { MARK_GOLD, utilityCss } from './style.js';

const state = { points: [], layer: null, line: null, result: null, svg: null, flip: false };

function layer() {
  if (!state.layer) state.layer = overlay('section');
  return state.layer;
}

function drawLine(lonlat) {
  const ds = layer();
  ds.entities.removeAll();
  const heights = lonlat.map(([lon, lat]) => groundHeight(lon, lat));
  const flat = lonlat.flatMap(([lon, lat]) => [lon, lat]);
  ds.entities.add({
    id: 'section-wall',
    wall: {
      positions: Cesium.Cartesian3.fromDegreesArray(flat),
      minimumHeights: heights.map((h) => h - 8.0),
      maximumHeights: heights.map((h) => h + 0.3),
      material: Cesium.Color.fromCssColorString('#ffffff').withAlpha(0.12),
      outline: true,
      outlineColor: Cesium.Color.WHITE.withAlpha(0.6),
    },
  });
  ds.entities.add({
    id: 'section-line',
    polyline: {
      positions: lonlat.map(([lon, lat], i) => Cesium.Cartesian3.fromDegrees(lon, lat, heights[i] + 0.3)),
      width: 3,
      material: Cesium.Color.YELLOW,
      depthFailMaterial: Cesium.Color.YELLOW.withAlpha(0.5),
    },
  });
  lonlat.forEach(([lon, lat], i) => ds.entities.add({
    position: Cesium.Cartesian3.fromDegrees(lon, lat, heights[i] + 0.3),
    label: { text: i === 0 ? 'A' : 'B', font: 'bold 15px sans-serif', fillColor: Cesium.Color.YELLOW,
      outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
      pixelOffset: new Cesium.Cartesian2(0, -16), disableDepthTestDistance: Number.POSITIVE_INFINITY },
  }));
}

/** Cut the tileset open along the line A-B (lon/lat), keeping the side away from the camera. */
function clip(a, b, { fly = true } = {}) {
  const tileset = world.tileset;
  const pa = Cesium.Cartesian3.fromDegrees(a[0], a[1], groundHeight(a[0], a[1]));
  const pb = Cesium.Cartesian3.fromDegrees(b[0], b[1], groundHeight(b[0], b[1]));
  const mid = Cesium.Cartesian3.midpoint(pa, pb, new Cesium.Cartesian3());
  const up = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(mid, new Cesium.Cartesian3());
  const along = Cesium.Cartesian3.normalize(Cesium.Cartesian3.subtract(pb, pa, new Cesium.Cartesian3()), new Cesium.Cartesian3());
  const normal = Cesium.Cartesian3.normalize(Cesium.Cartesian3.cross(up, along, new Cesium.Cartesian3()), new Cesium.Cartesian3());
  const toCamera = Cesium.Cartesian3.subtract(world.camera.positionWC, mid, new Cesium.Cartesian3());
  // Keep the side the camera is not on: the cut face then looks at the camera.
  if ((Cesium.Cartesian3.dot(normal, toCamera) > 0) !== state.flip) Cesium.Cartesian3.negate(normal, normal);
  const inverse = Cesium.Matrix4.inverse(tileset.clippingPlanesOriginMatrix, new Cesium.Matrix4());
  const localPoint = Cesium.Matrix4.multiplyByPoint(inverse, mid, new Cesium.Cartesian3());
  const localNormal = Cesium.Cartesian3.normalize(
    Cesium.Matrix4.multiplyByPointAsVector(inverse, normal, new Cesium.Cartesian3()), new Cesium.Cartesian3());
  const plane = new Cesium.ClippingPlane(localNormal, -Cesium.Cartesian3.dot(localNormal, localPoint));
  addChip('section', ['剖切面', 'Section cut'], clear); // × takes the cut off (chips.js)
  if (!tileset.clippingPlanes) {
    tileset.clippingPlanes = new Cesium.ClippingPlaneCollection({
      planes: [plane], edgeWidth: 1.5, edgeColor: Cesium.Color.WHITE,
    });
  } else {
    tileset.clippingPlanes.removeAll();
    tileset.clippingPlanes.add(plane);
    tileset.clippingPlanes.enabled = true;
  }
  // The ground is cut along the same plane (world coordinates), like the side of a trench.
  const globe = world.scene.globe;
  const groundPlane = new Cesium.ClippingPlane(normal, -Cesium.Cartesian3.dot(normal, mid));
  if (!globe.clippingPlanes) {
    globe.clippingPlanes = new Cesium.ClippingPlaneCollection({
      planes: [groundPlane], edgeWidth: 2.0, edgeColor: Cesium.Color.YELLOW,
    });
  } else {
    globe.clippingPlanes.removeAll();
    globe.clippingPlanes.add(groundPlane);
    globe.clippingPlanes.enabled = true;
  }
  if (fly) {
    const length = Cesium.Cartesian3.distance(pa, pb);
    const east = Cesium.Cartesian3.cross(Cesium.Cartesian3.UNIT_Z, up, new Cesium.Cartesian3());
    Cesium.Cartesian3.normalize(east, east);
    const north = Cesium.Cartesian3.cross(up, east, new Cesium.Cartesian3());
    const heading = Math.atan2(Cesium.Cartesian3.dot(normal, east), Cesium.Cartesian3.dot(normal, north));
    // From above the cut side, looking down at the cut face across the trench.
    const centre = Cesium.Cartesian3.add(mid, Cesium.Cartesian3.multiplyByScalar(up, -2.0, new Cesium.Cartesian3()), new Cesium.Cartesian3());
    world.camera.flyToBoundingSphere(new Cesium.BoundingSphere(centre, Math.max(length / 2, 5)), {
      duration: 1.0, offset: new Cesium.HeadingPitchRange(heading, -0.35, Math.max(length * 1.0, 15)),
    });
  }
}

export function removeClip() {
  removeChip('section');
  if (world.tileset && world.tileset.clippingPlanes) world.tileset.clippingPlanes.enabled = false;
  if (world.scene.globe.clippingPlanes) world.scene.globe.clippingPlanes.enabled = false;
}

function render(r, svg) {
  const rows = r.pipes.map((p) => ({
    attrs: { dataset: { pipe: p.id } },
    cells: [el('span', {}, el('i', { class: 'swatch', style: { background: utilityCss(p.utility) } }), `${p.utility} ${named('utility', p.utility)}`),
      p.id, p.size_text, num(p.offset_m, 2), num(p.centre_z, 2), num(p.depth_m, 2), num(p.cover_m, 2),
      p.clear_right_m === null || p.clear_right_m === undefined ? '–' : num(p.clear_right_m, 2)],
  }));
  showPanel(tr('横断面', 'Cross-section'), [
    el('p', { 'data-role': 'section-summary' }, tr(
      `剖切线长 ${num(r.length_m, 1)} m；剖到 ${r.pipes.length} 条管线` + (r.along.length ? `；${r.along.length} 条沿线平行` : '') + '。',
      `${num(r.length_m, 1)} m line; ${r.pipes.length} pipe${r.pipes.length === 1 ? '' : 's'} cut` +
      (r.along.length ? `; ${r.along.length} run along it` : '') + '.')),
    el('div', { 'data-role': 'section-drawing' }, drawing(svg, tr('横断面', 'Cross-section'))),
    section(tr('剖到的管线（A 至 B）', 'Pipes cut (A to B)'), table([tr('类别', 'utility'), tr('编号', 'id'), tr('规格', 'size'),
      tr('偏距 (m)', 'offset m'), tr('中心高程 (m)', 'centre elev.'), tr('埋深 (m)', 'depth'), tr('覆土 (m)', 'cover'),
      tr('与下一管净距 (m)', 'clear to next')], rows, { 'data-role': 'section-pipes' })),
    el('div', { class: 'actions' },
      el('button', { onclick: () => { state.flip = !state.flip; clip(state.line[0], state.line[1], { fly: true }); } }, tr('从另一侧看', 'Look from the other side')),
      el('button', { onclick: () => removeClip() }, tr('移除剖切', 'Remove the cut')),
      el('button', { onclick: () => clear() }, tr('清除', 'Clear'))),
  ], 'section', () => render(r, svg));
}

/** The section along a line given in lon/lat: the drawing, the list and the 3D cut. */
export async function runLonLat(lonlat) {
  state.line = lonlat;
  drawLine(lonlat);
  clip(lonlat[0], lonlat[lonlat.length - 1]);
  showPanel(tr('横断面', 'Cross-section'), busy(tr('正在剖切…', 'Cutting the section…')), 'section');
  return guard(tr('横断面', 'Cross-section'), async () => {
    const twin = await toTwin(lonlat.map(([lon, lat]) => [lon, lat]));
    return runLine(twin.points.map((p) => [p[0], p[1]]), { drawn: true });
  });
}

/** The section along a line in the twin CRS ([[easting, northing], ...]). */
export async function runLine(line, { drawn = false } = {}) {
  if (!drawn) {
    const lonlat = await toLonLat(line);
    state.line = lonlat;
    drawLine(lonlat);
    clip(lonlat[0], lonlat[lonlat.length - 1]);
  }
  state.twinLine = line;
  showPanel(tr('横断面', 'Cross-section'), busy(tr('正在剖切…', 'Cutting the section…')), 'section');
  return guard(tr('横断面', 'Cross-section'), async () => {
    const [r, svg] = await Promise.all([execute('section', { line }), execute('section', { line }, 'svg')]);
    state.result = r;
    state.svg = svg;
    render(r, svg);
    // The cut pipes keep their utility colours (the table says which); pipes running along the line are gold.
    setMarks(r.along.map((id) => [id, MARK_GOLD]), false);
    return r;
  });
}

export function clear() {
  state.points = [];
  state.line = null;
  if (state.layer) state.layer.entities.removeAll();
  removeClip();
  clearMarks();
}

export function sectionState() {
  return state;
}

register({
  id: 'section',
  get label() { return tr('横断面', 'Section'); },
  get hint() { return tr('横断面：点击横穿道路的剖切线起点，再点击终点。按 Esc 结束。', 'Cross-section: click the start, then the end of a line across the road. Esc to stop.'); },
  runLonLat,
  runLine,
  start() {
    state.points = [];
  },
  click(pick) {
    if (!pick.ground) {
      toast(tr('请点击地面', 'Click on the ground'), 'info');
      return;
    }
    const c = toCartographic(pick.ground);
    state.points.push([c.lon, c.lat]);
    if (state.points.length === 1) {
      const ds = layer();
      ds.entities.removeAll();
      ds.entities.add({ position: Cesium.Cartesian3.fromDegrees(c.lon, c.lat, groundHeight(c.lon, c.lat) + 0.3),
        point: { pixelSize: 9, color: Cesium.Color.YELLOW, disableDepthTestDistance: Number.POSITIVE_INFINITY } });
      return;
    }
    const line = state.points.slice(0, 2);
    state.points = [];
    runLonLat(line);
  },
  stop() {
    state.points = [];
  },
  leave: clear,
});
