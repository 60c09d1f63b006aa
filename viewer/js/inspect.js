// Inspect: click a pipe or a point -> its attributes from the tile at once, then its full
// record from the features API and its history (every version, who changed what, when).

import { enc, getJSON } from './api.js';
import { attributes, busy, el, guard, num, panelShows, section, showPanel, table, text, toast, when } from './ui.js';
import { flyToGeometry } from './scene.js';
import { activate, register, restyle } from './tools.js';
import { display, PRESSURISED, utilityCss } from './style.js';
import { colLabel, knows, named, tr } from './i18n.js';

/** Tile properties that are a catalogue column under another name. */
const ALIAS = { size: 'size_text' };
/** Columns whose values are codes, and the vocabulary category that names them. */
export const CODED = {
  utility: 'utility', subtype: 'utility', burial: 'burial', shape: 'shape', status: 'status',
  depth_reference: 'depth_reference', feature: 'feature', appurtenance: 'appurtenance',
  survey_class: 'survey_class', what: ['appurtenance', 'feature'], kind: ['appurtenance', 'feature'],
};

function label(name) {
  return colLabel(['segment', 'node'], ALIAS[name] || name);
}

/** A value for people: codes spelled out (直埋 for ZM), numbers per locale, yes/no. */
export function value(name, v) {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'boolean') return named('boolean', String(v));
  // Survey codes (ZM, YS) stay beside their name; words (circular, active) are replaced.
  const cat = [].concat(CODED[name] || []).find((c) => knows(c, v));
  if (cat) return `${named(cat, v)}${/^[A-Z0-9]+$/.test(v) ? ` (${v})` : ''}`;
  if (typeof v === 'number' && !Number.isInteger(v)) return num(v, name.endsWith('_m') || name.endsWith('_z') ? 2 : 3);
  return v;
}

export function utilityBadge(code) {
  return el('span', { class: 'utility' }, el('i', { class: 'swatch', style: { background: utilityCss(code) } }),
    knows('utility', code) ? `${code} ${named('utility', code)}` : text(code));
}

function tileRows(props) {
  return Object.keys(props).filter((k) => props[k] !== undefined && props[k] !== '')
    .map((k) => [label(k), k === 'utility' ? utilityBadge(props[k]) : value(k, props[k])]);
}

/** A change or state of the history (created, changed, retired ...), spelled out. */
function change(word) {
  return named('history', word);
}

function historyTable(h) {
  const rows = h.versions.slice().reverse().map((v) => [
    String(v.version), change(v.change), (v.changed || []).map((c) => label(c)).join(', ') || '–',
    when(v.valid_from),
    v.batch ? `${v.batch.created_by || ''} (${v.batch.kind || ''})` : '–',
  ]);
  return el('div', {},
    el('p', { class: 'muted' }, tr(`状态：${change(h.state)}；共 ${h.versions.length} 个版本。`,
      `State: ${h.state}; ${h.versions.length} version${h.versions.length === 1 ? '' : 's'}.`)),
    table([tr('版本', 'v'), tr('变更', 'change'), tr('变更内容', 'what changed'), tr('生效时间', 'from'), tr('操作人', 'by')],
      rows, { 'data-role': 'history' }));
}

/** The record (features API) of a feature for the panel; null when it could not be read. */
function recordBox(got) {
  if (got.f === undefined) return busy(tr('正在读取记录…', 'Reading the record…'));
  if (got.f === null) return el('p', { class: 'error' }, tr('无记录。', 'No record.'));
  const t = attributes(Object.entries(got.f.properties).map(([k, v]) =>
    [label(k), k === 'utility' ? utilityBadge(v) : value(k, v)]));
  t.dataset.role = 'record';
  return t;
}

function historyBox(got) {
  if (got.h === undefined) return busy(tr('正在读取历史…', 'Reading the history…'));
  if (got.h === null) return el('p', { class: 'error' }, tr('无历史。', 'No history.'));
  return historyTable(got.h);
}

/** The actions on a feature (shutoff for a burst here ...), once its record is read. */
function actionButtons(kind, id, f) {
  if (!f) return [];
  const utility = f.properties.utility;
  return [
    f.geometry ? el('button', { onclick: () => flyToGeometry(f.geometry) }, tr('缩放至', 'Zoom to')) : null,
    kind === 'pipe' && PRESSURISED.has(utility)
      ? el('button', { onclick: () => activate('shutoff').run(id) }, tr('此处爆管关阀', 'Shutoff for a burst here')) : null,
    kind === 'node'
      ? el('button', { onclick: () => activate('profile').useNode(id) }, tr('从此点作纵断面', 'Profile from this point')) : null,
  ].filter(Boolean);
}

/** Show a feature (kind 'pipe' or 'node') in the panel: tile metadata now, the API's record next.
 * The panel is drawn again as each answer arrives and on the language switch. */
export async function showFeature(kind, id, props = null, { fly = false } = {}) {
  display.selected = id;
  restyle();
  const collection = kind === 'pipe' ? 'pipes' : 'nodes';
  const table_ = kind === 'pipe' ? 'segments' : 'nodes';
  const got = { f: undefined, h: undefined }; // undefined while reading, null when it failed
  const draw = () => {
    const head = props ? attributes(tileRows(props)) : el('p', { class: 'muted' }, tr('当前视图中未绘出。', 'Not drawn in the current view.'));
    head.dataset.role = 'tile-attributes';
    showPanel(`${kind === 'pipe' ? tr('管段', 'Pipe') : tr('管点', 'Point')} ${id}`, [
      el('p', { class: 'feature-head', 'data-role': 'feature-head', dataset: { id, kind } },
        el('strong', { 'data-role': 'feature-id' }, id), ' ',
        props && props.utility ? utilityBadge(props.utility) : null),
      // the actions (shutoff for a burst here) at the top, not under the history
      el('div', { class: 'actions' }, ...actionButtons(kind, id, got.f)),
      section(tr('三维瓦片中的属性', 'From the 3D tiles'), head),
      section(tr('记录', 'Record'), recordBox(got)),
      section(tr('历史', 'History'), historyBox(got)),
    ], 'inspect', draw);
  };
  draw();
  const update = () => { if (panelShows(draw)) draw(); };
  await Promise.all([
    guard(tr('读取记录', 'Reading the record'), async () => {
      got.f = await getJSON(`/collections/${collection}/items/${enc(id)}`);
      if (fly && got.f.geometry) flyToGeometry(got.f.geometry);
      return true;
    }).then((ok) => { if (!ok) got.f = null; update(); }),
    guard(tr('读取历史', 'Reading the history'), async () => {
      got.h = await getJSON(`/features/${table_}/${enc(id)}/history`);
      return true;
    }).then((ok) => { if (!ok) got.h = null; update(); }),
  ]);
}

register({
  id: 'inspect',
  get label() { return tr('选择', 'Select'); },
  hint: '',
  click(pick) {
    if (!pick.feature || pick.props.id === undefined) {
      if (display.selected !== null) {
        display.selected = null;
        restyle();
      }
      toast(tr('此处无管线或管点', 'No pipe or point here'), 'info', 3);
      return;
    }
    showFeature(pick.kind, String(pick.props.id), pick.props);
  },
});
