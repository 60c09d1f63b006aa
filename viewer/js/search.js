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

let timer = null;
let results = [];
let active = -1;

function list() {
  return $('#search-results');
}

function renderResults() {
  const ul = list();
  ul.replaceChildren(...results.map((r, i) => el('li', {
    role: 'option', 'aria-selected': String(i === active), dataset: { kind: r.kind, id: r.id },
    onmousedown: (e) => { e.preventDefault(); choose(r); },
  }, el('span', { class: `kind ${r.kind}` }, r.kind), ' ', r.label)));
  ul.hidden = results.length === 0;
}

async function suggest(q) {
  if (!q) {
    results = [];
    renderResults();
    return;
  }
  await guard('Search', async () => {
    const r = await getJSON('/view/search', { q, limit: 6 });
    if ($('#search-input').value.trim() !== q) return; // typed on meanwhile
    results = r.results;
    active = results.length ? 0 : -1;
    renderResults();
    if (!results.length) {
      list().replaceChildren(el('li', { class: 'muted' }, `Nothing matches “${q}”`));
      list().hidden = false;
    }
  });
}

/** Show a road: its pipes from the features API (road=...), marked, listed, flown to. */
export async function showRoad(name, bbox) {
  showPanel(`Road ${name}`, busy('Reading its pipes…'), 'search');
  if (bbox) flyToBox(bbox[0], bbox[1], bbox[2], bbox[3]);
  return guard('Road', async () => {
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
    showPanel(`Road ${name}`, [
      el('p', {}, `${fc.features.length} pipes along ${name}${fc.numberMatched > fc.features.length ? ` (first ${fc.features.length} of ${fc.numberMatched})` : ''}.`),
      section('By utility', table(['utility', 'pipes', 'length m'],
        [...by.entries()].map(([u, r]) => [utilityBadge(u), String(r.n), num(r.m, 0)]))),
      section('Pipes', table(['id', 'size', 'material', 'built'], fc.features.slice(0, 300).map((f) => ({
        attrs: { dataset: { pipe: f.id } },
        cells: [el('a', { href: '#', onclick: (e) => { e.preventDefault(); showFeature('pipe', String(f.id), null, { fly: true }); } }, String(f.id)),
          f.properties.size_text, f.properties.material, f.properties.built],
      })))),
    ], 'search');
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
  const all = el('button', { type: 'button', dataset: { role: 'show-all' } }, '显示全部 Show all');
  all.addEventListener('click', () => {
    display.hiddenUtilities = new Set();
    display.onlySubtype = null;
    restyle();
    renderLayers();
    all.disabled = true;
  });
  showPanel(r.label, [el('p', {}, `只显示 ${r.label}. Only these pipes are shown.`), all], 'search');
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
  if (!exact) throw new Error(`nothing matches ${q}`);
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
      else if (input.value.trim()) guard('Search', () => go(input.value.trim()));
    } else if (e.key === 'Escape') {
      results = [];
      renderResults();
    }
  });
  input.addEventListener('blur', () => setTimeout(() => { list().hidden = true; }, 150));
  input.addEventListener('focus', () => { if (results.length) list().hidden = false; });
}
