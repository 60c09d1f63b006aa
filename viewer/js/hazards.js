// Dig site (抢险): click where the crew will dig -> every pipe and cable within the radius
// (nearest first, how deep its top is), the nearest valves, old and shallow pipes.

/* global Cesium */

import { execute } from './api.js';
import { busy, el, guard, num, section, showPanel, table, toast } from './ui.js';
import { groundHeight, toCartographic } from './scene.js';
import { toTwin } from './geo.js';
import { clearMarks, overlay, register, setMarks } from './tools.js';
import { MARK_GOLD, utilityCss } from './style.js';
import { named, tr } from './i18n.js';

const state = { layer: null, radius: 10, result: null };

function layer() {
  if (!state.layer) state.layer = overlay('hazards');
  return state.layer;
}

export async function run(lon, lat) {
  const ds = layer();
  ds.entities.removeAll();
  ds.entities.add({
    position: Cesium.Cartesian3.fromDegrees(lon, lat, groundHeight(lon, lat)),
    ellipse: { semiMajorAxis: state.radius, semiMinorAxis: state.radius, height: groundHeight(lon, lat) + 0.05,
      material: Cesium.Color.RED.withAlpha(0.15), outline: true, outlineColor: Cesium.Color.RED },
  });
  showPanel(tr('开挖点', 'Dig site'), busy(tr('正在查找下方的管线…', 'Looking for what lies below…')), 'hazards');
  return guard(tr('开挖点', 'Dig site'), async () => {
    const t = await toTwin([[lon, lat]]);
    const [x, y] = t.points[0];
    const r = await execute('hazards', { at: [x, y], radius_m: state.radius });
    state.result = r;
    const draw = () => { // drawn again on the language switch
      const rows = r.pipes.map((p) => ({
        attrs: { dataset: { pipe: p.id }, class: p.flags.length ? 'critical' : '' },
        cells: [el('span', {}, el('i', { class: 'swatch', style: { background: utilityCss(p.utility) } }), `${p.utility} ${named('utility', p.utility)}`),
          p.id, p.size, num(p.distance_m, 1), num(p.top_depth_m, 2), p.flags.join('; ') || '–'],
      }));
      const valves = r.valves.map((v) => [v.id, v.pipe, num(v.distance_m, 1), named('boolean', String(Boolean(v.operable)))]);
      showPanel(tr('开挖点', 'Dig site'), [
        el('p', {}, tr(`(${num(x, 1)}, ${num(y, 1)}) 周围 ${num(r.radius_m, 0)} m 内：${r.pipes.length} 条管线和电缆。`,
          `Within ${num(r.radius_m, 0)} m of (${num(x, 1)}, ${num(y, 1)}): ${r.pipes.length} pipes and cables.`)),
        r.notes.length ? el('ul', { class: 'notes' }, r.notes.map((n) => el('li', {}, n))) : null,
        section(tr('开挖点下方（由近及远）', 'Below the dig site (nearest first)'), table([tr('类别', 'utility'), tr('编号', 'id'),
          tr('规格', 'size'), tr('距离 (m)', 'distance m'), tr('管顶埋深 (m)', 'top depth m'), tr('提示', 'flags')], rows)),
        r.valves.length ? section(tr(`最近的阀门（${named('utility', r.utility)}）`, `Nearest valves (${named('utility', r.utility)})`),
          table([tr('阀门', 'valve'), tr('所在管段', 'on pipe'), tr('距离 (m)', 'distance m'), tr('可操作', 'operable')], valves)) : null,
        el('div', { class: 'actions' }, el('button', { onclick: () => { ds.entities.removeAll(); clearMarks(); } }, tr('清除', 'Clear'))),
      ], 'hazards', draw);
    };
    draw();
    setMarks(r.pipes.map((p) => [p.id, p.flags.length ? '#ff2d2d' : MARK_GOLD]), true);
    return r;
  });
}

register({
  id: 'hazards',
  get label() { return tr('开挖', 'Dig site'); },
  get hint() { return tr('开挖点：点击施工开挖的位置（半径 10 m）。按 Esc 结束。', 'Dig site: click where the crew will dig (10 m radius). Esc to stop.'); },
  leave() {
    if (state.layer) state.layer.entities.removeAll();
    state.result = null;
    clearMarks();
  },
  click(pick) {
    if (!pick.ground) {
      toast(tr('请点击地面', 'Click on the ground'), 'info');
      return;
    }
    const c = toCartographic(pick.ground);
    run(c.lon, c.lat);
  },
});
