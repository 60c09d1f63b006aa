// Inspect: click a pipe or a point -> its attributes from the tile at once, then its full
// record from the features API and its history (every version, who changed what, when).

import { enc, getJSON } from './api.js';
import { attributes, busy, el, guard, num, section, showPanel, table, text, toast, when } from './ui.js';
import { flyToGeometry } from './scene.js';
import { activate, register, restyle } from './tools.js';
import { display, PRESSURISED, utilityCss, UTILITY } from './style.js';

const LABELS = {
  id: 'Id', utility: 'Utility', subtype: 'Subtype', size: 'Size', size_text: 'Size', material: 'Material',
  depth_m: 'Depth (m)', built: 'Built', built_year: 'Year built', owner: 'Owner', status: 'Status',
  kind: 'Kind', name: 'Name', shape: 'Shape', diameter_mm: 'Diameter (mm)', width_mm: 'Width (mm)',
  height_mm: 'Height (mm)', burial: 'Burial', pressure_mpa: 'Pressure (MPa)', voltage_kv: 'Voltage (kV)',
  cables: 'Cables', holes_total: 'Duct holes', holes_used: 'Holes used', casing: 'Casing', flow: 'Flow',
  road: 'Road', remarks: 'Remarks', depth_reference: 'Depth to', from_node: 'From point', to_node: 'To point',
  from_depth_m: 'Depth at start (m)', to_depth_m: 'Depth at end (m)', from_z: 'Centre elev. start (m)',
  to_z: 'Centre elev. end (m)', length_m: 'Length (m)', scope: 'Scope', version: 'Version',
  valid_from: 'Valid from', map_id: 'Map no.', feature: 'Feature', appurtenance: 'Appurtenance',
  ground_z: 'Ground elev. (m)', well_depth_m: 'Well depth (m)', well_bottom_z: 'Well bottom (m)',
  eccentric_well_id: 'Eccentric well', sheet: 'Sheet', survey_date: 'Surveyed',
};

function label(name) {
  return LABELS[name] || name.replace(/_/g, ' ');
}

function value(name, v) {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number' && !Number.isInteger(v)) return num(v, name.endsWith('_m') || name.endsWith('_z') ? 2 : 3);
  return v;
}

export function utilityBadge(code) {
  const u = UTILITY[code];
  return el('span', { class: 'utility' }, el('i', { class: 'swatch', style: { background: utilityCss(code) } }),
    u ? `${code} ${u.en} ${u.zh}` : text(code));
}

function tileRows(props) {
  return Object.keys(props).filter((k) => props[k] !== undefined && props[k] !== '')
    .map((k) => [label(k), k === 'utility' ? utilityBadge(props[k]) : value(k, props[k])]);
}

function historyTable(h) {
  const rows = h.versions.slice().reverse().map((v) => [
    String(v.version), v.change, (v.changed || []).join(', ') || '–',
    when(v.valid_from),
    v.batch ? `${v.batch.created_by || ''} (${v.batch.kind || ''})` : '–',
  ]);
  return el('div', {},
    el('p', { class: 'muted' }, `State: ${h.state}; ${h.versions.length} version${h.versions.length === 1 ? '' : 's'}.`),
    table(['v', 'change', 'what changed', 'from', 'by'], rows, { 'data-role': 'history' }));
}

/** Show a feature (kind 'pipe' or 'node') in the panel: tile metadata now, the API's record next. */
export async function showFeature(kind, id, props = null, { fly = false } = {}) {
  display.selected = id;
  restyle();
  const collection = kind === 'pipe' ? 'pipes' : 'nodes';
  const table_ = kind === 'pipe' ? 'segments' : 'nodes';
  const record = el('div', {}, busy('Reading the record…'));
  const history = el('div', {}, busy('Reading the history…'));
  const actions = el('div', { class: 'actions' });
  const head = props ? attributes(tileRows(props)) : el('p', { class: 'muted' }, 'Not drawn in the current view.');
  head.dataset.role = 'tile-attributes';
  showPanel(`${kind === 'pipe' ? 'Pipe' : 'Point'} ${id}`, [
    el('p', { class: 'feature-head', 'data-role': 'feature-head', dataset: { id, kind } },
      el('strong', { 'data-role': 'feature-id' }, id), ' ',
      props && props.utility ? utilityBadge(props.utility) : null),
    actions, // the actions (shutoff for a burst here) at the top, not under the history
    section('From the 3D tiles', head),
    section('Record', record),
    section('History', history),
  ], 'inspect');
  await Promise.all([
    guard('Reading the record', async () => {
      const f = await getJSON(`/collections/${collection}/items/${enc(id)}`);
      const rows = Object.entries(f.properties).map(([k, v]) =>
        [label(k), k === 'utility' ? utilityBadge(v) : value(k, v)]);
      const t = attributes(rows);
      t.dataset.role = 'record';
      record.replaceChildren(t);
      if (fly && f.geometry) flyToGeometry(f.geometry);
      const utility = f.properties.utility;
      actions.replaceChildren(...[
        f.geometry ? el('button', { onclick: () => flyToGeometry(f.geometry) }, 'Zoom to') : null,
        kind === 'pipe' && PRESSURISED.has(utility)
          ? el('button', { onclick: () => activate('shutoff').run(id) }, 'Shutoff for a burst here') : null,
        kind === 'node'
          ? el('button', { onclick: () => activate('profile').useNode(id) }, 'Profile from this point') : null,
      ].filter(Boolean));
      return true;
    }).then((ok) => { if (!ok) record.replaceChildren(el('p', { class: 'error' }, 'No record.')); }),
    guard('Reading the history', async () => {
      const h = await getJSON(`/features/${table_}/${enc(id)}/history`);
      history.replaceChildren(historyTable(h));
      return true;
    }).then((ok) => { if (!ok) history.replaceChildren(el('p', { class: 'error' }, 'No history.')); }),
  ]);
}

register({
  id: 'inspect',
  label: 'Select',
  hint: '',
  click(pick) {
    if (!pick.feature || pick.props.id === undefined) {
      if (display.selected !== null) {
        display.selected = null;
        restyle();
      }
      toast('此处无管线 No pipe or point here', 'info', 3);
      return;
    }
    showFeature(pick.kind, String(pick.props.id), pick.props);
  },
});
