// Longitudinal profile (纵断面): pick two points of one utility (click a fitting, or a pipe
// near its end, or type the ids) -> the server's profile drawing and the path in 3D.

import { enc, execute, getJSON } from './api.js';
import { busy, drawing, el, guard, num, section, showPanel, table, toast } from './ui.js';
import { flyToBox, toCartographic } from './scene.js';
import { toLonLat } from './geo.js';
import { clearMarks, register, setMarks } from './tools.js';
import { MARK_GOLD, MARK_WHITE } from './style.js';
import { named, tr } from './i18n.js';

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
  const from = el('input', { id: 'profile-from', placeholder: tr('起点编号', 'from point id'), value: state.from || '', 'aria-label': tr('起点', 'From point') });
  const to = el('input', { id: 'profile-to', placeholder: tr('终点编号', 'to point id'), value: state.to || '', 'aria-label': tr('终点', 'To point') });
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
  }, from, to, el('button', { type: 'submit' }, tr('绘制纵断面', 'Draw profile')));
}

function showPicker(message) {
  showPanel(tr('纵断面', 'Longitudinal profile'), [
    el('p', { class: 'muted' }, message), picker(),
  ], 'profile');
}

function render(r, svg) {
  const segs = r.segments.map((s) => ({
    attrs: { class: s.reverse_grade ? 'critical' : '', dataset: { pipe: s.id } },
    cells: [s.id, s.size_text, num(s.length_m, 1), `${num(s.slope_permille, 2)} ‰`, named('grade', s.direction),
      s.reverse_grade ? el('span', { class: 'badge danger' }, tr('倒坡', 'reverse grade')) : ''],
  }));
  const crossings = r.crossings.map((c) => [c.id, `${c.utility} ${named('utility', c.utility)}`, c.size_text, num(c.chainage_m, 1), named('crossing', c.position),
    num(c.vertical_clear_m, 2)]);
  showPanel(`${tr('纵断面', 'Profile')} ${r.from} → ${r.to}`, [
    el('p', { 'data-role': 'profile-summary' }, tr(
      `${named('utility', r.utility)}：沿 ${r.segments.length} 条管段共 ${num(r.length_m, 1)} m，${r.nodes.length} 个管点；` +
      `${r.crossings.length} 条其他管线与之交叉。`,
      `${named('utility', r.utility)}: ${num(r.length_m, 1)} m along ${r.segments.length} pipes, ${r.nodes.length} points; ` +
      `${r.crossings.length} other pipes cross it.`)),
    el('div', { 'data-role': 'profile-drawing' }, drawing(svg, tr('纵断面', 'Longitudinal profile'))),
    section(tr('沿线管段', 'Pipes along the path'), table([tr('管段', 'pipe'), tr('规格', 'size'), tr('长度 (m)', 'length m'),
      tr('坡度 (‰)', 'slope (‰)'), tr('坡向', 'direction'), ''], segs, { 'data-role': 'profile-pipes' })),
    r.crossings.length ? section(tr('交叉管线', 'Crossing pipes'), table([tr('管段', 'pipe'), tr('类别', 'utility'), tr('规格', 'size'),
      tr('里程 (m)', 'chainage'), tr('位置', 'is'), tr('净距 (m)', 'clear m')], crossings)) : null,
    picker(),
    el('div', { class: 'actions' }, el('button', { onclick: () => clear() }, tr('清除', 'Clear'))),
  ], 'profile', () => render(r, svg));
}

export async function run(from, to) {
  state.from = from;
  state.to = to;
  showPanel(`${tr('纵断面', 'Profile')} ${from} → ${to}`, busy(tr('正在查找路径并绘制…', 'Finding the path and drawing it…')), 'profile');
  return guard(tr('纵断面', 'Profile'), async () => {
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
  showPicker(tr('点击第一个点（管点，或管段靠近端点处），再点击第二个点。', 'Click the first point (a fitting, or a pipe near its end), then the second.'));
}

async function useNode(id) {
  if (!state.from || (state.from && state.to)) {
    state.from = id;
    state.to = null;
    showPicker(tr(`起点 ${id}：请点击第二个点。`, `From ${id}: now click the second point.`));
    setMarks([[id, MARK_GOLD]], false);
    return;
  }
  state.to = id;
  await run(state.from, state.to);
}

register({
  id: 'profile',
  get label() { return tr('纵断面', 'Profile'); },
  get hint() { return tr('纵断面：点击第一个点（管点，或管段靠近端点处），再点击第二个点。按 Esc 结束。', 'Profile: click the first point (a fitting, or a pipe near its end), then the second. Esc to stop.'); },
  useNode,
  run,
  start() {
    state.from = null;
    state.to = null;
    showPicker(tr('点击第一个点（管点，或管段靠近端点处），再点击第二个点；或输入编号。', 'Click the first point (a fitting, or a pipe near its end), then the second; or type the ids.'));
  },
  async click(pick) {
    if (!pick.feature) {
      toast(tr('请点击管点，或管段靠近端点处', 'Click a fitting or a pipe near its end'), 'info');
      return;
    }
    let id = String(pick.props.id);
    if (pick.kind === 'pipe') {
      const where = pick.surface ? toCartographic(pick.surface) : pick.ground ? toCartographic(pick.ground) : null;
      id = await guard(tr('纵断面', 'Profile'), () => nearerEnd(id, where));
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
