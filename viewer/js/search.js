// Search: pipes and points by id, roads by name, utilities by code or name (PS, 排水, 雨水);
// choose one to fly there (a utility: only its pipes are shown until 显示全部 Show all).
//
// Suggestions come from /view/search as the user types; a chosen pipe or point is read from
// the features API and shown like a click on it; a road's pipes come from the features API's
// property filter (road=...), marked and listed.

import { getJSON } from './api.js';
import { $, busy, el, guard, num, section, showPanel, table } from './ui.js';
import { flyToBox } from './scene.js';
import { showFeature, utilityBadge } from './inspect.js';
import { display, MARK_GOLD, UTILITIES } from './style.js';
import { restyle, setMarks } from './tools.js';
import { renderLayers } from './layers.js';
import { knows, named, tr } from './i18n.js';

let timer = null;
let results = [];
let active = -1;

function list() {
  return $('#search-results');
}

/** What a result is, for people. */
function kindName(kind) {
  return { pipe: tr('管段', 'pipe'), node: tr('管点', 'point'), road: tr('道路', 'road'),
    utility: tr('类别', 'utility') }[kind] || kind;
}

/** A result's line in the language in use (the server's label names codes as they are). */
export function resultLabel(r) {
  if (r.kind === 'road') return tr(`${r.id}（${r.pipes} 条管线）`, `${r.id} (${r.pipes} pipes)`);
  if (r.kind === 'utility') {
    return tr(`${named('utility', r.id)} ${r.id}：${r.pipes} 条管线`, `${named('utility', r.id)} ${r.id}: ${r.pipes} pipes`);
  }
  if (r.kind === 'node') {
    const parts = String(r.label).split(' ');
    const last = parts[parts.length - 1];
    for (const cat of ['appurtenance', 'feature']) {
      if (parts.length > 1 && knows(cat, last)) return [...parts.slice(0, -1), named(cat, last)].join(' ');
    }
  }
  return r.label;
}

function renderResults() {
  const ul = list();
  ul.replaceChildren(...results.map((r, i) => el('li', {
    role: 'option', 'aria-selected': String(i === active), dataset: { kind: r.kind, id: r.id },
    onmousedown: (e) => { e.preventDefault(); choose(r); },
  }, el('span', { class: `kind ${r.kind}` }, kindName(r.kind)), ' ', resultLabel(r))));
  ul.hidden = results.length === 0;
}

async function suggest(q) {
  if (!q) {
    results = [];
    renderResults();
    return;
  }
  await guard(tr('搜索', 'Search'), async () => {
    const r = await getJSON('/view/search', { q, limit: 6 });
    if ($('#search-input').value.trim() !== q) return; // typed on meanwhile
    results = r.results;
    active = results.length ? 0 : -1;
    renderResults();
    if (!results.length) {
      list().replaceChildren(el('li', { class: 'muted' }, tr(`没有与“${q}”匹配的结果`, `Nothing matches “${q}”`)));
      list().hidden = false;
    }
  });
}

/** Show a road: its pipes from the features API (road=...), marked, listed, flown to. */
export async function showRoad(name, bbox) {
  showPanel(`${tr('道路', 'Road')} ${name}`, busy(tr('正在读取道路上的管线…', 'Reading its pipes…')), 'search');
  if (bbox) flyToBox(bbox[0], bbox[1], bbox[2], bbox[3]);
  return guard(tr('道路', 'Road'), async () => {
    const fc = await getJSON('/collections/pipes/items', { road: name, limit: 10000 });
    const by = new Map();
    for (const f of fc.features) {
      const u = f.properties.utility;
      const row = by.get(u) || { n: 0, m: 0 };
      row.n += 1;
      row.m += f.properties.length_m || 0;
      by.set(u, row);
    }
    setMarks(fc.features.map((f) => [f.id, MARK_GOLD]), true);
    const more = fc.numberMatched > fc.features.length;
    const draw = () => showPanel(`${tr('道路', 'Road')} ${name}`, [
      el('p', {}, tr(`${name}沿线 ${fc.features.length} 条管线${more ? `（共 ${fc.numberMatched} 条，仅列前 ${fc.features.length} 条）` : ''}。`,
        `${fc.features.length} pipes along ${name}${more ? ` (first ${fc.features.length} of ${fc.numberMatched})` : ''}.`)),
      section(tr('按管线类别', 'By utility'), table([tr('类别', 'utility'), tr('管段数', 'pipes'), tr('长度 (m)', 'length m')],
        [...by.entries()].map(([u, r]) => [utilityBadge(u), String(r.n), num(r.m, 0)]))),
      section(tr('管段', 'Pipes'), table([tr('编号', 'id'), tr('规格', 'size'), tr('材质', 'material'), tr('埋设日期', 'built')], fc.features.slice(0, 300).map((f) => ({
        attrs: { dataset: { pipe: f.id } },
        cells: [el('a', { href: '#', onclick: (e) => { e.preventDefault(); showFeature('pipe', String(f.id), null, { fly: true }); } }, String(f.id)),
          f.properties.size_text, f.properties.material, f.properties.built],
      })))),
    ], 'search', draw);
    draw();
    return fc;
  });
}

/** Show only one utility (or subtype) of a search, flown to, until "show all". */
export function showUtility(r) {
  display.hiddenUtilities = new Set(UTILITIES.map((u) => u.code).filter((c) => c !== r.utility));
  display.onlySubtype = r.subtype || null;
  restyle();
  renderLayers();
  if (r.bbox) flyToBox(r.bbox[0], r.bbox[1], r.bbox[2], r.bbox[3]);
  const all = el('button', { type: 'button', dataset: { role: 'show-all' } }, tr('显示全部', 'Show all'));
  all.addEventListener('click', () => {
    display.hiddenUtilities = new Set();
    display.onlySubtype = null;
    restyle();
    renderLayers();
    all.disabled = true;
  });
  const what = resultLabel(r);
  showPanel(what, [el('p', {}, tr(`只显示 ${what}。`, `Only these pipes are shown: ${what}.`)), all], 'search');
  return r;
}

/** Go to a search result. */
export async function choose(r) {
  results = [];
  renderResults();
  $('#search-input').blur();
  if (r.kind === 'road') return showRoad(r.id, r.bbox);
  if (r.kind === 'utility') return showUtility(r);
  return showFeature(r.kind, r.id, null, { fly: true });
}

/** Search for an exact id (pipe first, then point) or a road name and go there. */
export async function go(q) {
  const r = await getJSON('/view/search', { q, limit: 6 });
  const exact = r.results.find((x) => x.id === q) || r.results[0];
  if (!exact) throw new Error(tr(`没有与“${q}”匹配的结果`, `nothing matches ${q}`));
  return choose(exact);
}

export function initSearch() {
  const input = $('#search-input');
  input.addEventListener('input', () => {
    clearTimeout(timer);
    const q = input.value.trim();
    timer = setTimeout(() => suggest(q), 200);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      if (!results.length) return;
      active = (active + (e.key === 'ArrowDown' ? 1 : -1) + results.length) % results.length;
      renderResults();
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (results[active]) choose(results[active]);
      else if (input.value.trim()) guard(tr('搜索', 'Search'), () => go(input.value.trim()));
    } else if (e.key === 'Escape') {
      results = [];
      renderResults();
    }
  });
  input.addEventListener('blur', () => setTimeout(() => { list().hidden = true; }, 150));
  input.addEventListener('focus', () => { if (results.length) list().hidden = false; });
}
