// Live readings and alarms (管线状况监测, 预警): sensor markers with their last value, alarms
// glowing red on the 3D pipes and points, the alarms panel (告警: 确认 acknowledge, 关闭 close)
// and a sensor's time series (uPlot, from npm), all kept current by the server's event stream.
//
// The stream is GET /live/events read with fetch(), so it carries the session's token in the
// Authorization header like every other request (EventSource cannot send headers, and a token
// in the URL would end up in logs). It ends after a while or when the server drops a slow
// client; the viewer then opens a new one and reads the alarms again, so nothing is missed.

/* global Cesium */

import uPlot from '/uplot/uPlot.esm.js';
import { can, enc, getJSON, postJSON, request } from './api.js';
import { $, el, guard, num, panelOwner, section, showPanel, table, text, toast, when } from './ui.js';
import { flyToBox, groundHeight, world } from './scene.js';
import { display } from './style.js';
import { activate, activeTool, overlay, restyle } from './tools.js';
import { named, tr } from './i18n.js';

export const ALARM_RED = '#ff1f3d';
// Severities, states, causes and sensor kinds are named by the server (GET /view/vocabulary).
const severityName = (v) => named('alarm_severity', v);
const stateName = (v) => named('alarm_state', v);
const causeName = (v) => named('alarm_cause', v);
const kindName = (v) => named('sensor_kind', v);
const CHART_POINTS = 1000;

const state = {
  sensors: new Map(), // id -> sensor, with its last value
  alarms: new Map(), // id -> alarm not closed
  lines: new Map(), // pipe id -> its centreline (Cartesian3[]) or null
  marked: new Set(), // feature ids this module coloured red
  chart: null, // {sensor, plot, xs, ys}
  burst: null, // the last suspected burst
  drawPending: false,
  layer: null,
  connected: false,
  events: 0,
  lastEvent: null,
  started: false,
};

function layer() {
  if (!state.layer) state.layer = overlay('live');
  return state.layer;
}

const sensorId = (a) => a.sensor_id ?? a.sensor;
const featureOf = (s) => s.node || s.pipe || s.node_id || s.segment_id || null;
const pipeOf = (a) => a.pipe || a.segment_id || null;

// ------------------------------------------------------------------ where sensors and alarms are
/** A sensor's marker position: its lon/lat from the server, a little above the ground. */
function markerPosition(s) {
  if (!Number.isFinite(s.lon) || !Number.isFinite(s.lat)) return null;
  return Cesium.Cartesian3.fromDegrees(s.lon, s.lat, groundHeight(s.lon, s.lat) + 1.5);
}

/** The 3D centreline of a pipe (ellipsoidal heights), read once from the features API. */
async function pipeLine(id) {
  if (state.lines.has(id)) return state.lines.get(id);
  const f = await getJSON(`/collections/pipes/items/${enc(id)}`);
  const offset = world.frame ? world.frame.geoid_offset_m : 0;
  const line = f.geometry && f.geometry.type === 'LineString'
    ? f.geometry.coordinates.map(([x, y, h = 0]) => Cesium.Cartesian3.fromDegrees(x, y, h + offset)) : null;
  state.lines.set(id, line);
  return line;
}

// ------------------------------------------------------------------ drawing
function alarmOf(sensor) {
  let worst = null;
  for (const a of state.alarms.values()) {
    if (sensorId(a) !== sensor) continue;
    if (!worst || (a.severity === 'critical' && worst.severity !== 'critical')) worst = a;
  }
  return worst;
}

function markerText(s) {
  const v = s.last_v;
  return `${s.id}  ${v === null || v === undefined ? '–' : num(v, 3)} ${s.unit || ''}`;
}

function drawSensor(s) {
  const position = markerPosition(s);
  if (!position) return;
  const ds = layer();
  const alarm = alarmOf(s.id);
  const colour = Cesium.Color.fromCssColorString(alarm ? ALARM_RED : '#3dd6ff');
  const id = `live-sensor-${s.id}`;
  let e = ds.entities.getById(id);
  if (!e) {
    e = ds.entities.add({
      id,
      position,
      point: { pixelSize: 10, outlineColor: Cesium.Color.BLACK, outlineWidth: 2,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: { font: '13px sans-serif', fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK,
        outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE, pixelOffset: new Cesium.Cartesian2(10, -10),
        horizontalOrigin: Cesium.HorizontalOrigin.LEFT, disableDepthTestDistance: Number.POSITIVE_INFINITY },
    });
  }
  e.point.color = colour;
  e.point.pixelSize = alarm ? 14 : 10;
  e.label.text = alarm ? `⚠ ${markerText(s)}` : markerText(s);
  e.label.fillColor = alarm ? colour : Cesium.Color.WHITE;
}

/** Pipes in alarm glow red along their centreline (seen through the ground too). */
async function drawGlows() {
  const ds = layer();
  const want = new Set([...state.alarms.values()].map(pipeOf).filter(Boolean));
  for (const e of ds.entities.values.slice()) {
    if (e.id.startsWith('live-glow-') && !want.has(e.id.slice(10))) ds.entities.remove(e);
  }
  for (const id of want) {
    if (ds.entities.getById(`live-glow-${id}`)) continue;
    const line = await guard(`管段 ${id}`, () => pipeLine(id));
    if (!line || ds.entities.getById(`live-glow-${id}`) || !want.has(id)) continue;
    const glow = new Cesium.PolylineGlowMaterialProperty({ glowPower: 0.35, color: Cesium.Color.fromCssColorString(ALARM_RED) });
    ds.entities.add({ id: `live-glow-${id}`, polyline: { positions: line, width: 14, material: glow, depthFailMaterial: glow } });
  }
}

/** Colour the pipes and points of open alarms red in the tileset's style, next to any tool's marks. */
function markFeatures() {
  const want = new Set([...state.alarms.values()].map((a) => pipeOf(a) || a.node || a.node_id).filter(Boolean));
  for (const id of state.marked) {
    if (!want.has(id) && display.marks.get(id) === ALARM_RED) display.marks.delete(id);
  }
  for (const id of want) if (!display.marks.has(id)) display.marks.set(id, ALARM_RED);
  state.marked = want;
  restyle();
}

function redraw() {
  badge();
  if (panelOwner() === 'live') renderPanel();
  // The list first; the 3D marks follow once it is painted: recolouring the tiles re-evaluates
  // the style of every loaded feature, which in software WebGL takes a frame or two.
  if (!state.drawPending) {
    state.drawPending = true;
    requestAnimationFrame(() => setTimeout(draw3d, 0));
  }
}

function draw3d() {
  state.drawPending = false;
  for (const s of state.sensors.values()) drawSensor(s);
  markFeatures();
  drawGlows();
}

function badge() {
  const open = [...state.alarms.values()].filter((a) => a.state === 'open').length;
  const b = $('#alarm-count');
  if (b) {
    b.textContent = String(open);
    b.hidden = open === 0;
  }
  const button = $('#live-toggle');
  if (button) button.classList.toggle('alarming', open > 0);
}

// ------------------------------------------------------------------ the alarms panel
async function act(alarm, action) {
  await guard(action === 'acknowledge' ? tr('确认告警', 'Acknowledge') : tr('关闭告警', 'Close'), async () => {
    const a = await postJSON(`/alarms/${enc(alarm.id)}/${action}`, {});
    upsertAlarm(a);
    redraw();
  });
}

function alarmRows() {
  const rows = [...state.alarms.values()].sort((a, b) => String(b.raised_at).localeCompare(String(a.raised_at)));
  const mayAct = can('edit');
  return rows.map((a) => ({
    attrs: { class: a.state === 'open' ? 'alarm-open' : '', dataset: { alarm: String(a.id), state: a.state } },
    cells: [
      el('span', { class: `badge ${a.severity === 'critical' ? 'danger' : ''}` }, severityName(a.severity)),
      el('a', { href: '#', title: tr('定位并显示曲线', 'Zoom to it and chart it'),
        onclick: (e) => { e.preventDefault(); zoomTo(sensorId(a)); showChart(sensorId(a)); } }, sensorId(a)),
      pipeOf(a) || a.node || a.node_id || '–',
      `${causeName(a.cause)}${a.value !== null && a.value !== undefined ? ` (${num(a.value, 3)})` : ''}`,
      when(a.raised_at),
      stateName(a.state),
      el('span', {},
        a.state === 'open' && mayAct
          ? el('button', { class: 'small', 'data-action': 'acknowledge', onclick: () => act(a, 'acknowledge') }, tr('确认', 'Ack')) : null,
        a.state !== 'closed' && mayAct
          ? el('button', { class: 'small', 'data-action': 'close', onclick: () => act(a, 'close') }, tr('关闭', 'Close')) : null),
    ],
  }));
}

/** The sensor's row of the open panel with its new value (the panel is not drawn again). */
function updateSensorRow(s) {
  if (panelOwner() !== 'live') return;
  const cells = document.querySelectorAll(`[data-role=sensors] tr[data-sensor="${CSS.escape(s.id)}"] td`);
  if (cells.length < 5) return;
  cells[3].textContent = `${num(s.last_v, 3)} ${s.unit || ''}`;
  cells[4].textContent = when(s.last_t);
}

function sensorRows() {
  return [...state.sensors.values()].sort((a, b) => a.id.localeCompare(b.id)).map((s) => ({
    attrs: { dataset: { sensor: s.id } },
    cells: [s.id, kindName(s.kind), featureOf(s) || '–',
      `${num(s.last_v, 3)} ${s.unit || ''}`, when(s.last_t),
      el('button', { class: 'small', onclick: () => showChart(s.id) }, tr('曲线', 'Chart'))],
  }));
}

/** A suspected burst: the likely pipe, the sensors that dropped, its shutoff one click away. */
function burstSection(b) {
  const valves = b.shutoff && b.shutoff.valves ? b.shutoff.valves.length : null;
  return section(tr('疑似爆管', 'Suspected burst'),
    el('p', { 'data-role': 'burst' }, tr(
      `${named('utility', b.utility || '')} 管段 ${b.pipe || '–'}；压力骤降于 ${(b.sensors || []).join('、')}` +
      (valves !== null ? `；需关闭 ${valves} 个阀门` : '') + (b.note ? `（${b.note}）` : ''),
      `${named('utility', b.utility || '')} pipe ${b.pipe || '–'}; pressure drops at ${(b.sensors || []).join(', ')}` +
      (valves !== null ? `; ${valves} valves to close` : '') + (b.note ? ` (${b.note})` : ''))),
    b.pipe && can('analyse')
      ? el('div', { class: 'actions' }, el('button', { class: 'danger', onclick: () => activate('shutoff').run(b.pipe) },
        tr('此管段关阀方案', 'Shutoff for this pipe')))
      : null);
}

function renderPanel() {
  const chart = state.chart ? $('#live-chart') : null;
  showPanel(tr('实时监测', 'Live'), [
    el('p', { class: 'muted small', 'data-role': 'live-status' },
      state.connected ? tr('● 实时连接', '● live') : tr('○ 正在重新连接…', '○ reconnecting…')),
    section(tr(`告警（${state.alarms.size}）`, `Alarms (${state.alarms.size})`), state.alarms.size
      ? table([tr('级别', 'severity'), tr('传感器', 'sensor'), tr('位置', 'at'), tr('原因', 'cause'), tr('时间', 'raised'),
        tr('状态', 'state'), ''], alarmRows(), { 'data-role': 'alarms' })
      : el('p', { class: 'muted', 'data-role': 'alarms-none' }, tr('无告警。', 'No open alarms.'))),
    state.burst ? burstSection(state.burst) : null,
    chart || null,
    section(tr(`传感器（${state.sensors.size}）`, `Sensors (${state.sensors.size})`), state.sensors.size
      ? table([tr('编号', 'id'), tr('类型', 'kind'), tr('位置', 'at'), tr('读数', 'value'), tr('时间', 'time'), ''], sensorRows(),
        { 'data-role': 'sensors' })
      : el('p', { class: 'muted' }, tr('未登记传感器（twin sensors add）。', 'No sensors registered (twin sensors add).'))),
  ], 'live', renderPanel);
}

/** Milliseconds of an ISO 8601 time; PostgreSQL's short offset (+00) made one JavaScript reads. */
function parseTime(t) {
  return Date.parse(String(t).replace(/([+-]\d\d)$/, '$1:00'));
}


/** Open the live panel (alarms and sensors). */
export function openPanel() {
  renderPanel();
  markFeatures();
}

/** Fly close to a sensor's marker. */
export function zoomTo(id) {
  const s = state.sensors.get(id);
  if (s && Number.isFinite(s.lon)) flyToBox(s.lon - 0.0006, s.lat - 0.0006, s.lon + 0.0006, s.lat + 0.0006);
}

// ------------------------------------------------------------------ the chart
/** The time series of a sensor: its readings of the last day, then live. */
export async function showChart(id) {
  const s = state.sensors.get(id);
  if (!s) return null;
  if (panelOwner() !== 'live') renderPanel();
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  return guard(tr(`传感器曲线 ${id}`, `Chart of ${id}`), async () => {
    const r = await getJSON(`/sensors/${enc(id)}/readings`, { since, limit: CHART_POINTS });
    const xs = r.t.map((t) => parseTime(t) / 1000);
    const ys = r.v.slice();
    const box = el('section', { class: 'block live-chart', id: 'live-chart', dataset: { sensor: id } },
      el('h3', {}, `${tr('曲线', 'Chart')} ${id} (${kindName(s.kind)}, ${s.unit || ''})`));
    const old = $('#live-chart');
    if (old) old.replaceWith(box);
    else $('#panel-body').prepend(box);
    if (state.chart) state.chart.plot.destroy();
    const width = Math.max(260, box.clientWidth || 380);
    const threshold = (v) => (v === null || v === undefined ? null : v);
    const plot = new uPlot({
      width, height: 200, legend: { live: false },
      scales: { x: { time: true } },
      axes: [{ stroke: '#9aa4af', grid: { stroke: '#39414b' } }, { stroke: '#9aa4af', grid: { stroke: '#39414b' } }],
      series: [{}, { label: `${id} (${s.unit || ''})`, stroke: '#3dd6ff', width: 2, spanGaps: false }],
      hooks: { draw: [(u) => drawThresholds(u, threshold(s.low), threshold(s.high))] },
    }, [xs, ys], box);
    state.chart = { sensor: id, plot, xs, ys };
    return { sensor: id, points: xs.length };
  });
}

function drawThresholds(u, low, high) {
  const ctx = u.ctx;
  for (const v of [low, high]) {
    if (v === null) continue;
    const y = u.valToPos(v, 'y', true);
    ctx.save();
    ctx.strokeStyle = ALARM_RED;
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }
}

function chartAppend(id, t, v) {
  const c = state.chart;
  if (!c || c.sensor !== id || !document.contains(c.plot.root)) return;
  const x = parseTime(t) / 1000;
  if (!Number.isFinite(x) || (c.xs.length && x <= c.xs[c.xs.length - 1])) return;
  c.xs.push(x);
  c.ys.push(v);
  if (c.xs.length > 5 * CHART_POINTS) {
    c.xs.splice(0, c.xs.length - CHART_POINTS);
    c.ys.splice(0, c.ys.length - CHART_POINTS);
  }
  c.plot.setData([c.xs, c.ys]);
}

// ------------------------------------------------------------------ the event stream
function upsertAlarm(a) {
  if (a.state === 'closed') state.alarms.delete(a.id);
  else state.alarms.set(a.id, { ...(state.alarms.get(a.id) || {}), ...a });
}

function onEvent(name, data) {
  state.events += 1;
  state.lastEvent = { name, at: performance.now() };
  if (name === 'readings') {
    for (const [id, r] of Object.entries(data.sensors || {})) {
      const s = state.sensors.get(id);
      if (!s) continue;
      s.last_v = r.v;
      s.last_t = r.t;
      drawSensor(s);
      chartAppend(id, r.t, r.v);
      updateSensorRow(s);
    }
  } else if (name === 'alarm' && data.alarm) {
    const a = data.alarm;
    const isNew = !state.alarms.has(a.id) && a.state === 'open';
    if (!state.sensors.has(sensorId(a))) refresh(); // a sensor registered since the page read them
    upsertAlarm(a);
    redraw();
    if (isNew) toast(`${tr('告警', 'Alarm')} ${sensorId(a)}: ${causeName(a.cause) || ''}`, 'error');
  } else if (name === 'burst' && data.burst) {
    state.burst = data.burst;
    toast(`${tr('疑似爆管', 'Suspected burst')}${data.burst.pipe ? ` ${data.burst.pipe}` : ''}: ${data.burst.message || ''}`, 'error', 20);
    if (panelOwner() === 'live') renderPanel();
  }
}

/** Read an SSE body: `event:` / `data:` lines, events split by a blank line. */
async function readStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (!data.length) continue;
      try {
        onEvent(name, JSON.parse(data.join('\n')));
      } catch (err) {
        // one bad event must not end the stream
        console.warn('live event', name, err); // eslint-disable-line no-console
      }
    }
  }
}

async function stream() {
  let delay = 1000;
  while (state.started) {
    try {
      const r = await request('/live/events', { headers: { Accept: 'text/event-stream' } });
      state.connected = true;
      delay = 1000;
      if (panelOwner() === 'live') renderPanel();
      await refresh(); // what happened while no stream was open
      await readStream(r.body);
    } catch (err) {
      if (err && err.status === 401) return; // signed out: the page goes back to the sign-in
    }
    state.connected = false;
    if (panelOwner() === 'live') renderPanel();
    await new Promise((done) => setTimeout(done, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

/** Read the sensors and the alarms not closed again, and draw them. */
export async function refresh() {
  const [sensors, open, acknowledged] = await Promise.all([
    getJSON('/sensors'), getJSON('/alarms', { state: 'open' }), getJSON('/alarms', { state: 'acknowledged' }),
  ]);
  const list = sensors.sensors || [];
  state.sensors = new Map(list.map((s) => [s.id, s]));
  state.alarms = new Map([...(open.alarms || []), ...(acknowledged.alarms || [])].map((a) => [a.id, a]));
  const drops = [...state.alarms.values()].filter((a) => a.cause === 'drop' && a.kind === 'pressure').length;
  state.burst = drops >= 2 && can('analyse') ? (await getJSON('/alarms/burst')).burst : null;
  redraw();
}

/** Start: the markers, the alarms, the stream; picking a marker opens its chart. */
export async function start() {
  if (state.started) return;
  state.started = true;
  const button = $('#live-toggle');
  if (button) button.addEventListener('click', () => openPanel());
  const handler = new Cesium.ScreenSpaceEventHandler(world.scene.canvas);
  handler.setInputAction((movement) => {
    // Only while selecting: another tool's click may have just changed the scene (a section's
    // clipping planes), which a second pick before the next frame would trip over.
    if (activeTool()?.id !== 'inspect') return;
    const picked = world.scene.pick(movement.position);
    const id = picked && picked.id instanceof Cesium.Entity ? picked.id.id : '';
    if (id.startsWith('live-sensor-')) showChart(id.slice('live-sensor-'.length));
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
  await guard(tr('实时监测', 'Live readings'), () => refresh());
  stream();
}

/** Stop reconnecting (the stream open now ends at its renewal). */
export function stop() {
  state.started = false;
}

/** For tests and benchmarks. */
export function liveState() {
  return {
    connected: state.connected,
    events: state.events,
    lastEvent: state.lastEvent,
    sensors: [...state.sensors.values()].map((s) => ({ id: s.id, v: s.last_v ?? null, drawn: Boolean(layer().entities.getById(`live-sensor-${s.id}`)) })),
    alarms: [...state.alarms.values()].map((a) => ({ id: a.id, sensor: sensorId(a), state: a.state, at: pipeOf(a) || a.node || a.node_id })),
    marked: [...state.marked].filter((id) => display.marks.get(id) === ALARM_RED),
    glowing: layer().entities.values.filter((e) => e.id.startsWith('live-glow-')).map((e) => e.id.slice(10)),
    chart: state.chart ? { sensor: state.chart.sensor, points: state.chart.xs.length } : null,
  };
}
