// The layer panel: utilities on and off with their standard colours and lengths, abandoned
// and planned pipes, fittings, colour by utility / material / decade with its legend, the
// ground (see-through) and the offline base imagery.

import { getJSON, session } from './api.js';
import { $, el, guard, num, when } from './ui.js';
import { display, legendRows, setOwners, setTheme, themes, UTILITIES, utilityCss } from './style.js';
import { CLASSES as CRITICALITY, criticalityState } from './criticality.js';
import { download, viewPng } from './snapshot.js';
import { restyle } from './tools.js';
import { setResets } from './chips.js';
import { setGroundOpacity, showImagery, viewAll, world } from './scene.js';
import { named, onLang, tr } from './i18n.js';

const stats = { utility: null, material: null, decade: null, owner: null };
/** Colour modes (专题图): the button's label, Chinese first. */
const MODES = { utility: ['管线类别', 'utility'], material: ['材质', 'material'], decade: ['年代', 'decade built'],
  age: ['管龄/使用年限', 'age vs service life'], owner: ['权属', 'owner'],
  pressure: ['压力等级', 'pressure class'], accuracy: ['探测精度', 'survey accuracy'],
  criticality: ['关阀影响', 'criticality'] };
const mode = (m) => (MODES[m] ? tr(...MODES[m]) : m);
/** Colour modes whose classes the server sends (GET /view/theme/{name}): the tiles lack the fields. */
const SERVED_THEMES = new Set(['pressure', 'accuracy', 'criticality']);

function utilityList() {
  const present = new Map((stats.utility || []).map((r) => [r.utility, r]));
  const rows = UTILITIES.filter((u) => !stats.utility || present.has(u.code)).map((u) => {
    const r = present.get(u.code);
    const box = el('input', { type: 'checkbox', checked: !display.hiddenUtilities.has(u.code), dataset: { utility: u.code } });
    box.addEventListener('change', () => {
      if (box.checked) display.hiddenUtilities.delete(u.code);
      else display.hiddenUtilities.add(u.code);
      restyle();
    });
    return el('li', {}, el('label', {}, box,
      el('i', { class: 'swatch', style: { background: utilityCss(u.code) } }),
      el('span', { class: 'name' }, `${u.code} ${named('utility', u.code)}`),
      r ? el('span', { class: 'detail' }, `${num(r.length_km, 1)} km`) : null));
  });
  return el('ul', { class: 'layer-list', 'data-role': 'utilities' }, rows);
}

function legend() {
  const rows = legendRows(stats);
  return el('ul', { class: 'legend', 'data-role': 'legend' }, rows.map((r) => el('li', {},
    el('i', { class: 'swatch', style: { background: r.css } }), el('span', { class: 'name' }, r.label),
    r.detail !== undefined ? el('span', { class: 'detail' }, `${num(r.detail, 1)} km`) : null)));
}

function toggle(label, key, role) {
  const box = el('input', { type: 'checkbox', checked: display[key], dataset: { role } });
  box.addEventListener('change', () => {
    display[key] = box.checked;
    restyle();
  });
  return el('label', { class: 'toggle' }, box, label);
}

async function ensureStats(by) {
  if (stats[by]) return;
  if (by === 'age') return;
  if (SERVED_THEMES.has(by)) {
    if (!themes[by]) setTheme(by, await getJSON(`/view/theme/${by}`));
    return;
  }
  const r = await getJSON('/stats', { by });
  stats[by] = by === 'owner' ? r.rows.slice().sort((a, b) => b.length_km - a.length_km) : r.rows;
  if (by === 'owner') setOwners(stats.owner.map((row) => row.owner));
}

export function renderLayers() {
  const root = $('#layers-body');
  const colourBy = el('div', { class: 'segmented wrap', role: 'radiogroup', 'aria-label': tr('专题图', 'Colour by') },
    Object.keys(MODES).map((m) => {
      const b = el('button', { type: 'button', role: 'radio', 'aria-checked': String(display.colourBy === m), dataset: { colour: m } },
        mode(m));
      b.addEventListener('click', async () => {
        await guard(tr('图例', 'Legend'), () => ensureStats(m));
        display.colourBy = m;
        display.themeLabel = MODES[m]; // the chip's label (chips.js), ['中文', 'English']
        restyle();
        renderLayers();
      });
      return b;
    }));
  const opacity = el('input', { type: 'range', min: '0', max: '1', step: '0.05', value: String(world.groundOpacity ?? 0.3), 'aria-label': tr('地表透明度', 'Ground opacity') });
  opacity.addEventListener('input', () => {
    world.groundOpacity = Number(opacity.value);
    setGroundOpacity(world.groundOpacity);
  });
  const imagery = el('input', { type: 'checkbox', checked: Boolean(world.imagery) });
  imagery.addEventListener('change', () => {
    world.imagery = imagery.checked;
    guard(tr('底图影像', 'Base imagery'), () => showImagery(imagery.checked));
  });
  const who = session.get();
  root.replaceChildren(
    el('p', { class: 'signed-in', 'data-role': 'signed-in' }, tr(`已登录：${who ? who.user : '?'} (${who ? who.role : '?'})`, `Signed in as ${who ? who.user : '?'} (${who ? who.role : '?'})`)),
    el('h3', {}, tr('管线类别', 'Utilities')), utilityList(),
    el('h3', {}, tr('显示', 'Show')),
    toggle(tr('废弃管线', 'Abandoned pipes'), 'showAbandoned', 'show-abandoned'),
    toggle(tr('规划与拟建管线', 'Planned and proposed pipes'), 'showPlanned', 'show-planned'),
    toggle(tr('附属物、井与阀门', 'Fittings, wells and valves'), 'showFittings', 'show-fittings'),
    el('h3', {}, tr('专题图', 'Colour by')), colourBy, legend(),
    el('h3', {}, tr('地表', 'Ground')),
    el('label', { class: 'slider' }, tr('透明度', 'Opacity'), opacity),
    el('label', { class: 'toggle' }, imagery, tr('底图影像（离线 Natural Earth）', 'Base imagery (offline Natural Earth)')),
    el('div', { class: 'actions' }, el('button', { onclick: () => viewAll(1.0) }, tr('查看全网', 'View the whole network')),
      el('button', { type: 'button', dataset: { role: 'export-png' }, title: tr('地图与图例导出为 PNG', 'The view and its legend as a PNG'),
        onclick: () => { download(exportView(), `pipetwin-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}.png`); } },
      tr('导出图片', 'Export PNG'))),
  );
}

/** The legend of what the map shows now: the criticality map when it is on, else the colour mode
 * (utility colours of the utilities shown, with their lengths). */
export function currentLegend() {
  const crit = criticalityState();
  if (crit.on) {
    return { title: tr('关阀影响（停水用户数）', 'Shutoff impact (customers cut off)'),
      rows: CRITICALITY.map((c) => ({ label: tr(`${c.label} 户`, `${c.label} customers`), css: c.css })) };
  }
  const title = `${tr('专题图', 'Colour by')}: ${mode(display.colourBy)}`;
  if (display.colourBy !== 'utility') return { title, rows: legendRows(stats) };
  const rows = (stats.utility || []).filter((r) => r.utility && !display.hiddenUtilities.has(r.utility)).map((r) => {
    const u = UTILITIES.find((x) => x.code === r.utility);
    return { label: `${r.utility} ${u ? named('utility', r.utility) : ''}`, css: utilityCss(r.utility), detail: r.length_km };
  });
  return { title, rows: rows.concat(legendRows(stats)) };
}

/** The map and its legend as a PNG data URL (导出图片). */
export function exportView() {
  const { title, rows } = currentLegend();
  const who = session.get();
  return viewPng(title, rows, `PipeTwin · ${when(Date.now())}${who ? ` · ${who.user}` : ''}`);
}

export async function initLayers() {
  onLang(() => renderLayers());
  // The chips over the map (chips.js) undo a filter and a thematic colouring here.
  setResets({
    filter: () => {
      display.hiddenUtilities = new Set();
      display.only = null;
      display.onlySubtype = null;
      restyle();
      renderLayers();
    },
    theme: () => {
      display.colourBy = 'utility';
      restyle();
      renderLayers();
    },
  });
  renderLayers();
  await guard(tr('图层统计', 'Layer statistics'), async () => {
    await ensureStats('utility');
    renderLayers();
  });
}
