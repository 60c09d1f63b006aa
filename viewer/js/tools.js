// The map tools: one is active at a time and receives the clicks on the map.
//
// A click becomes a `Pick`: the screen position, the tile feature under it (a pipe or a
// fitting, with its metadata), the 3D point on what was hit and the point on the ground.

/* global Cesium */

import { $$, hint } from './ui.js';
import { groundAt, surfaceAt, world } from './scene.js';
import { display } from './style.js';
import { syncDisplayChips } from './chips.js';

const tools = new Map();
let active = null;

/** Register a tool: {id, label, title, hint, start(), stop(), leave(), click(pick)}; leave()
 * takes the tool's marks, pins, labels and cuts off the map when another tool takes over (or
 * Esc ends it). */
export function register(tool) {
  tools.set(tool.id, tool);
}

export function activeTool() {
  return active;
}

/** Make a tool the active one (the default `inspect` when `id` is the active one again). */
export function activate(id) {
  const next = tools.get(id) || tools.get('inspect');
  if (active && active !== next) {
    if (active.stop) active.stop();
    if (active.leave) active.leave();
  }
  active = next;
  for (const b of $$('#tools button[data-tool]')) b.setAttribute('aria-pressed', String(b.dataset.tool === active.id));
  hint(active.hint || '');
  world.scene.canvas.style.cursor = active.id === 'inspect' ? 'default' : 'crosshair';
  if (active.start) active.start();
  return active;
}

/** The metadata of a tile feature as a plain object. */
export function featureProperties(feature) {
  const out = {};
  for (const name of feature.getPropertyIds()) out[name] = feature.getProperty(name);
  return out;
}

/** What is under a screen position. */
export function pickAt(screen) {
  const picked = world.scene.pick(screen);
  const feature = picked instanceof Cesium.Cesium3DTileFeature ? picked : undefined;
  const pick = { screen, feature, props: feature ? featureProperties(feature) : null, entity: null };
  if (picked && picked.id instanceof Cesium.Entity) pick.entity = picked.id;
  pick.kind = pick.props ? (pick.props.kind !== undefined ? 'node' : 'pipe') : null;
  pick.surface = feature ? surfaceAt(screen) : undefined;
  pick.ground = groundAt(screen);
  return pick;
}

/** Hand map clicks (and taps: Cesium reports a tap as a left click) to the active tool. */
export function listen() {
  const handler = new Cesium.ScreenSpaceEventHandler(world.scene.canvas);
  handler.setInputAction((movement) => {
    const pick = pickAt(movement.position);
    if (active && active.click) active.click(pick);
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
  // Esc ends the current tool (its leave() takes its marks and cuts off the map), but not while
  // a text field is being edited (Esc there belongs to the field, e.g. the search's list).
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || !active || active.id === 'inspect') return;
    if (e.target instanceof HTMLElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(e.target.tagName)) return;
    activate('inspect');
  });
  return handler;
}

/** Marks on tile features by id (css colour), replacing those a tool set before. */
export function setMarks(entries, fade = true) {
  display.marks = new Map(entries);
  display.fadeUnmarked = fade && display.marks.size > 0;
  restyle();
}

/** Highlight one pipe (or point) in the 3D view: the selection colour, faded others kept as they
 * are. For a pipe a check, an edit or a proposal finding refuses; null takes it off. */
export function highlightPipe(id) {
  display.selected = id === null || id === undefined ? null : id;
  restyle();
}

export function clearMarks() {
  display.marks = new Map();
  display.fadeUnmarked = false;
  restyle();
}

export function restyle() {
  if (world.tileset) world.tileset.makeStyleDirty();
  syncDisplayChips();
}

/** A data source of entities that belongs to one tool. */
export function overlay(name) {
  const ds = new Cesium.CustomDataSource(name);
  world.widget.dataSources.add(ds);
  return ds;
}
