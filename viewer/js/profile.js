// Longitudinal profile (纵断面): pick two points of one utility (click a fitting, or a pipe
// near its end, or type the ids) -> the server's profile drawing and the path in 3D.

import { enc, execute, getJSON } from './api.js';
import { busy, drawing, el, guard, num, section, showPanel, table, toast } from './ui.js';
import { flyToBox, toCartographic } from './scene.js';
import { toLonLat } from './geo.js';
import { clearMarks, register, setMarks } from './tools.js';
import { MARK_GOLD, MARK_WHITE } from './style.js';

const state = { from: null, to: null, result: null, svg: null };

/** The end node of a pipe nearer a clicked position (lon/lat). */
async function nearerEnd(pipeId, position) {
  const f = await getJSON(`/collections/pipes/items/${enc(pipeId)}`);
  const coords = f.geometry.coordinates;
  const [first, last] = [coords[0], coords[coords.length - 1]];
  if (!position) return f.properties.from_node;
  const d = (p) => Math.hypot((p[0] - position.lon) * Math.cos((position.lat * Math.PI) / 180), p[1] - position.lat);
  return d(first) <= d(last) ? f.properties.from_node : f.properties.to_node;
}

function picker() {
  const from = el('input', { id: 'profile-from', placeholder: 'from point id', value: state.from || '', 'aria-label': 'From point' });
  const to = el('input', { id: 'profile-to', placeholder: 'to point id', value: state.to || '', 'aria-label': 'To point' });
  from.addEventListener('change', () => { state.from = from.value.trim() || null; });
  to.addEventListener('change', () => { state.to = to.value.trim() || null; });
  return el('form', {
    class: 'inline-form',
    onsubmit: (e) => {
      e.preventDefault();
      state.from = from.value.trim();
      state.to = to.value.trim();
      if (state.from && state.to) run(state.from, state.to);
    },
  }, from, to, el('button', { type: 'submit' }, 'Draw profile'));
}

function showPicker(message) {
  showPanel('Longitudinal profile 纵断面', [
    el('p', { class: 'muted' }, message), picker(),
  ], 'profile');
}

function render(r, svg) {
  const segs = r.segments.map((s) => ({
    attrs: { class: s.reverse_grade ? 'critical' : '', dataset: { pipe: s.id } },
    cells: [s.id, s.size_text, num(s.length_m, 1), `${num(s.slope_permille, 2)} ‰`, s.direction,
      s.reverse_grade ? el('span', { class: 'badge danger' }, 'reverse grade') : ''],
  }));
  const crossings = r.crossings.map((c) => [c.id, c.utility, c.size_text, num(c.chainage_m, 1), c.position,
    num(c.vertical_clear_m, 2)]);
  showPanel(`Profile ${r.from} → ${r.to}`, [
    el('p', { 'data-role': 'profile-summary' },
      `${r.utility}: ${num(r.length_m, 1)} m along ${r.segments.length} pipes, ${r.nodes.length} points; ` +
      `${r.crossings.length} other pipes cross it.`),
    el('div', { 'data-role': 'profile-drawing' }, drawing(svg, 'Longitudinal profile')),
    section('Pipes along the path', table(['pipe', 'size', 'length m', 'slope', 'direction', ''], segs, { 'data-role': 'profile-pipes' })),
    r.crossings.length ? section('Crossing pipes', table(['pipe', 'utility', 'size', 'chainage', 'is', 'clear m'], crossings)) : null,
    picker(),
    el('div', { class: 'actions' }, el('button', { onclick: () => clear() }, 'Clear')),
  ], 'profile');
}

export async function run(from, to) {
  state.from = from;
  state.to = to;
  showPanel(`Profile ${from} → ${to}`, busy('Finding the path and drawing it…'), 'profile');
  return guard('Profile', async () => {
    const inputs = { from_node: from, to_node: to };
    const [r, svg] = await Promise.all([execute('profile', inputs), execute('profile', inputs, 'svg')]);
    state.result = r;
    state.svg = svg;
    render(r, svg);
    setMarks(r.segments.map((s) => [s.id, MARK_GOLD]).concat(r.nodes.map((n) => [n.id, MARK_WHITE])), true);
    const pts = await toLonLat(r.nodes.map((n) => [n.x, n.y]));
    if (pts.length) {
      const lons = pts.map((p) => p[0]);
      const lats = pts.map((p) => p[1]);
      flyToBox(Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats));
    }
    return r;
  });
}

export function profileState() {
  return state;
}

export function clear() {
  state.from = null;
  state.to = null;
  state.result = null;
  clearMarks();
  showPicker('Click the first point (a fitting, or a pipe near its end), then the second.');
}

async function useNode(id) {
  if (!state.from || (state.from && state.to)) {
    state.from = id;
    state.to = null;
    showPicker(`From ${id}: now click the second point.`);
    setMarks([[id, MARK_GOLD]], false);
    return;
  }
  state.to = id;
  await run(state.from, state.to);
}

register({
  id: 'profile',
  label: 'Profile',
  hint: 'Profile: click the first point (a fitting, or a pipe near its end), then the second. Esc to stop.',
  useNode,
  run,
  start() {
    state.from = null;
    state.to = null;
    showPicker('Click the first point (a fitting, or a pipe near its end), then the second; or type the ids.');
  },
  async click(pick) {
    if (!pick.feature) {
      toast('Click a fitting or a pipe near its end', 'info');
      return;
    }
    let id = String(pick.props.id);
    if (pick.kind === 'pipe') {
      const where = pick.surface ? toCartographic(pick.surface) : pick.ground ? toCartographic(pick.ground) : null;
      id = await guard('Profile', () => nearerEnd(id, where));
      if (!id) return;
    }
    await useNode(id);
  },
  leave() {
    state.from = null;
    state.to = null;
    state.result = null;
    clearMarks();
  },
});
