// In the field (现场): "where am I" (在哪) for a crew with a phone. The browser's position
// (navigator.geolocation) goes into the twin's CRS (POST /view/transform); the camera flies
// there, a marker and the accuracy circle show it, and the nearest valves (GET
// /view/valves/nearest: distance, depth, road) are listed nearest first, each with zoom-to.

/* global Cesium */

import { getJSON } from './api.js';
import { busy, el, guard, num, panelOwner, showPanel, table, text } from './ui.js';
import { flyToBox, groundHeight } from './scene.js';
import { toTwin } from './geo.js';
import { overlay, register } from './tools.js';
import { onLang, tr } from './i18n.js';

const VALVES = 5;
const HERE = '#3d8bfd';
const VALVE = '#ffe600';
const state = { layer: null, position: null, valves: null, error: null, run: 0, pending: null, utility: '' };
/** The networks a crew closes valves on: all, or one. */
const NETWORKS = [['', '全部', 'All'], ['JS', '给水', 'Water'], ['RQ', '燃气', 'Gas'], ['RL', '热力', 'Heat']];

function layer() {
  if (!state.layer) state.layer = overlay('field');
  return state.layer;
}

/** The browser's position: {lon, lat, accuracy_m}, or an Error people can read. */
function locate() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) {
      reject(new Error(tr('此浏览器不能定位', 'this browser cannot tell where it is')));
      return;
    }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lon: p.coords.longitude, lat: p.coords.latitude, accuracy_m: p.coords.accuracy }),
      (e) => reject(new Error(e.code === 1
        ? tr('未允许定位：请在浏览器设置中允许本站使用位置', 'location not allowed: allow this site to use your location')
        : tr(`无法定位（${e.message}）`, `no position (${e.message})`))),
      { enableHighAccuracy: true, timeout: 20000, maximumAge: 10000 });
  });
}

function drawHere(ds, here) {
  const h = groundHeight(here.lon, here.lat);
  const radius = Math.max(1, Math.min(here.accuracy_m || 0, 5000));
  ds.entities.add({
    id: 'field-here',
    position: Cesium.Cartesian3.fromDegrees(here.lon, here.lat, h + 0.5),
    point: { pixelSize: 14, color: Cesium.Color.fromCssColorString(HERE), outlineColor: Cesium.Color.WHITE,
      outlineWidth: 3, disableDepthTestDistance: Number.POSITIVE_INFINITY },
    label: { text: tr('我的位置', 'You are here'), font: '14px "Noto Sans SC", sans-serif', fillColor: Cesium.Color.WHITE,
      outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
      pixelOffset: new Cesium.Cartesian2(0, -22), disableDepthTestDistance: Number.POSITIVE_INFINITY },
  });
  ds.entities.add({
    id: 'field-accuracy',
    position: Cesium.Cartesian3.fromDegrees(here.lon, here.lat, h),
    ellipse: { semiMajorAxis: radius, semiMinorAxis: radius, height: h + 0.1,
      material: Cesium.Color.fromCssColorString(HERE).withAlpha(0.18), outline: true,
      outlineColor: Cesium.Color.fromCssColorString(HERE) },
  });
}

function drawValves(ds, valves) {
  valves.forEach((v, i) => {
    if (!v.lonlat) return;
    const [lon, lat] = v.lonlat;
    const h = groundHeight(lon, lat);
    ds.entities.add({
      id: `field-valve-${v.id}`,
      position: Cesium.Cartesian3.fromDegrees(lon, lat, h + 1.5),
      point: { pixelSize: 11, color: Cesium.Color.fromCssColorString(VALVE), outlineColor: Cesium.Color.BLACK,
        outlineWidth: 2, disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: { text: `${i + 1}  ${v.id}`, font: '13px "Noto Sans SC", sans-serif', fillColor: Cesium.Color.WHITE,
        outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        pixelOffset: new Cesium.Cartesian2(10, -10), horizontalOrigin: Cesium.HorizontalOrigin.LEFT,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
    });
  });
}

/** Fly to a lon/lat and what lies within `radius` metres of it. */
function flyAround(lon, lat, radius) {
  const dLat = radius / 111320;
  const dLon = radius / (111320 * Math.cos(Cesium.Math.toRadians(lat)));
  flyToBox(lon - dLon, lat - dLat, lon + dLon, lat + dLat);
}

function zoomTo(v) {
  if (v.lonlat) flyAround(v.lonlat[0], v.lonlat[1], 8);
}

function render() {
  const here = state.position;
  const valves = state.valves || [];
  const rows = valves.map((v, i) => ({
    attrs: { dataset: { valve: v.id }, class: v.operable === false ? 'critical' : '' },
    cells: [String(i + 1),
      el('span', { title: `${tr('所在管线', 'on pipe')} ${text(v.pipe)}` }, v.id, el('br'),
        el('span', { class: 'muted small' }, text(v.road))),
      num(v.distance_m, 1), num(v.depth_m, 2),
      v.operable === false ? tr('不可操作', 'inoperable') : tr('可操作', 'operable'),
      el('button', { class: 'small', type: 'button', dataset: { role: 'zoom' }, onclick: () => zoomTo(v) },
        tr('定位', 'Zoom'))],
  }));
  showPanel(tr('在哪 · 附近阀门', 'Where am I · nearest valves'), [
    el('p', { dataset: { role: 'field-position' } },
      tr(`我的位置：东 ${num(here.x, 1)}，北 ${num(here.y, 1)}（${here.crs}），精度 ±${num(here.accuracy_m, 0)} 米`,
        `You are at E ${num(here.x, 1)}, N ${num(here.y, 1)} (${here.crs}), ±${num(here.accuracy_m, 0)} m`),
      here.ground_z !== null && here.ground_z !== undefined ? tr(`，地面高程 ${num(here.ground_z, 2)} 米`,
        `, ground ${num(here.ground_z, 2)} m`) : ''),
    valves.length ? table(['#', tr('阀门 · 道路', 'valve · road'), tr('距离(米)', 'dist. m'), tr('埋深(米)', 'depth m'),
      tr('状态', 'state'), ''], rows, { 'data-role': 'field-valves', class: 'list field-valves' })
      : el('p', { class: 'muted' }, tr('孪生库中没有阀门。', 'The twin records no valves.')),
    el('p', { class: 'muted small' }, tr('距离为孪生库坐标系中的平面距离；埋深为阀门所在管线点的探测埋深。',
      'Distance: plan distance in the twin CRS; depth: the surveyed depth at the valve\'s point.')),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'primary', onclick: () => whereAmI() }, tr('重新定位', 'Locate again'))),
    el('div', { class: 'segmented', role: 'radiogroup', 'aria-label': tr('阀门所属管网', 'Valves of'), dataset: { role: 'field-networks' } },
      NETWORKS.map(([code, zh, en]) => el('button', { type: 'button', role: 'radio', 'aria-checked': String(state.utility === code),
        dataset: { network: code }, onclick: () => { state.utility = code; whereAmI(); } }, tr(zh, en)))),
  ], 'field');
}

/** Find the browser's position, show it and the nearest valves. */
export function whereAmI() {
  state.pending = locateAndShow();
  return state.pending;
}

/** The last "where am I" under way (or done). */
export function pending() {
  return state.pending;
}

async function locateAndShow() {
  const run = ++state.run;
  showPanel(tr('在哪', 'Where am I'), busy(tr('正在定位…', 'Finding your position…')), 'field');
  return guard(tr('在哪', 'Where am I'), async () => {
    let here;
    try {
      here = await locate();
    } catch (err) {
      state.error = err.message;
      showPanel(tr('在哪', 'Where am I'), el('p', { class: 'error', role: 'alert', dataset: { role: 'field-error' } },
        err.message), 'field');
      return null;
    }
    const t = await toTwin([[here.lon, here.lat]], true);
    const [x, y] = t.points[0];
    const answer = await getJSON('/view/valves/nearest', { x, y, n: VALVES, utility: state.utility || undefined });
    if (run !== state.run) return null;
    Object.assign(state, { error: null, valves: answer.valves,
      position: { ...here, x, y, crs: t.crs, ground_z: t.ground_z ? t.ground_z[0] : null } });
    const ds = layer();
    ds.entities.removeAll();
    drawHere(ds, here);
    drawValves(ds, answer.valves);
    const far = answer.valves.length ? answer.valves[Math.min(2, answer.valves.length - 1)].distance_m : 30;
    flyAround(here.lon, here.lat, Math.max(20, Math.min(far * 1.2, 400), here.accuracy_m || 0));
    render();
    return fieldState();
  });
}

/** For tests: the position and the valves listed. */
export function fieldState() {
  return { position: state.position, valves: state.valves, error: state.error,
    entities: state.layer ? state.layer.entities.values.length : 0 };
}

onLang(() => { if (state.position && panelOwner() === 'field') render(); });

register({
  id: 'field',
  label: '在哪',
  get hint() {
    return tr('在哪：显示我的位置与最近的阀门。Esc 结束。', 'Where am I: your position and the nearest valves. Esc to stop.');
  },
  start() { whereAmI(); },
  leave() {
    state.run += 1;
    if (state.layer) state.layer.entities.removeAll();
    Object.assign(state, { position: null, valves: null, error: null });
  },
  click() {},
});

/** The bar wraps onto as many rows as its buttons need (a phone; English words on a 1280 px
 * screen): no tool hidden off-screen, and the map and the panels start below it. */
function fitBar() {
  const bar = document.getElementById('bar');
  if (!bar || !window.ResizeObserver) return;
  const root = document.documentElement;
  const phone = window.matchMedia('(max-width: 760px)');
  const fit = () => {
    const h = bar.getBoundingClientRect().height;
    if (h > 0) root.style.setProperty('--bar-h', `${Math.ceil(h)}px`);
    else root.style.removeProperty('--bar-h');
  };
  new ResizeObserver(fit).observe(bar);
  phone.addEventListener('change', fit);
}

fitBar();
