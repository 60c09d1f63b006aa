// Snapping (捕捉) for the edit tool: the cursor snaps to a survey point (node) or a pipe vertex
// within a few pixels, measured on the screen.
//
// Candidates come from the features API (nodes and pipes in a small lon/lat box around the
// cursor), cached per box until an edit changes the network; each is projected to the screen
// (SceneTransforms.worldToWindowCoordinates) and the nearest within TOLERANCE_PX wins, a node
// before a pipe's interior vertex. While drawing, a ring marks the snap and a rubber band runs
// from the start to the cursor.

/* global Cesium */

import { getJSON } from './api.js';
import { toCartographic, world } from './scene.js';

/** How near (CSS px) the cursor must come to a node or vertex to snap to it. */
export const TOLERANCE_PX = 12;
/** Candidates are read for the cursor's cell (about 110 m of latitude a side) and its eight
 * neighbours, in one request per kind, and kept for that cell. */
const CELL_DEG = 0.001;
const LIMIT = 2000;

const cells = new Map(); // "ix:iy" -> Promise<candidates[] of the 3 x 3 cells about it>

/** Forget the cached candidates (after an edit). */
export function invalidate() {
  cells.clear();
}

function heightOffset() {
  return world.frame ? world.frame.geoid_offset_m || 0 : 0;
}

/** A candidate: {kind: 'node' | 'vertex', id (node id, or the pipe's), node (a pipe's end node),
 * lon, lat, h (ellipsoidal), position (Cartesian3), utility}. */
function candidate(kind, id, coord, extra) {
  const h = (coord[2] || 0) + heightOffset();
  return { kind, id, lon: coord[0], lat: coord[1], h, position: Cesium.Cartesian3.fromDegrees(coord[0], coord[1], h), ...extra };
}

async function loadCell(ix, iy) {
  const bbox = [(ix - 1) * CELL_DEG, (iy - 1) * CELL_DEG, (ix + 2) * CELL_DEG, (iy + 2) * CELL_DEG].map((v) => v.toFixed(7)).join(',');
  const [nodes, pipes] = await Promise.all([
    getJSON('/collections/nodes/items', { bbox, limit: LIMIT }),
    getJSON('/collections/pipes/items', { bbox, limit: LIMIT }),
  ]);
  const out = [];
  for (const f of nodes.features) {
    if (f.geometry) out.push(candidate('node', String(f.id), f.geometry.coordinates, { utility: f.properties.utility, props: f.properties }));
  }
  out.pipes = [];
  for (const f of pipes.features) {
    const coords = f.geometry ? f.geometry.coordinates : [];
    out.pipes.push({ id: String(f.id), utility: f.properties.utility,
      positions: coords.map((c) => candidate('vertex', String(f.id), c, {}).position) });
    coords.forEach((c, i) => {
      const end = i === 0 ? f.properties.from_node : i === coords.length - 1 ? f.properties.to_node : null;
      out.push(candidate('vertex', String(f.id), c, { node: end, index: i, utility: f.properties.utility }));
    });
  }
  return out;
}

function cell(ix, iy) {
  const key = `${ix}:${iy}`;
  let p = cells.get(key);
  if (!p) {
    p = loadCell(ix, iy).catch((err) => {
      cells.delete(key); // try again next time
      throw err;
    });
    cells.set(key, p);
  }
  return p;
}

/** The candidates around a lon/lat (its cell and the eight about it), once loaded. */
export async function candidatesNear(lon, lat) {
  return cell(Math.floor(lon / CELL_DEG), Math.floor(lat / CELL_DEG));
}

/** The pipe nearest to a screen position within `tolerance` px (its drawn centreline, from the
 * features API, not the tiles, which may be behind an edit): {id, utility, px} or null. */
export async function pipeAt(screen, { skip = null, tolerance = TOLERANCE_PX } = {}) {
  const ground = groundUnder(screen);
  if (!ground) return null;
  const g = toCartographic(ground);
  const near = await candidatesNear(g.lon, g.lat);
  let best = null;
  for (const pipe of near.pipes || []) {
    if (skip && skip(pipe)) continue;
    const pts = pipe.positions.map(screenOf);
    for (let i = 1; i < pts.length; i += 1) {
      const a = pts[i - 1];
      const b = pts[i];
      if (!a || !b) continue;
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      const t = Math.max(0, Math.min(1, ((screen.x - a.x) * dx + (screen.y - a.y) * dy) / (dx * dx + dy * dy || 1)));
      const px = Math.hypot(a.x + t * dx - screen.x, a.y + t * dy - screen.y);
      if (px <= tolerance && (!best || px < best.px)) best = { id: pipe.id, utility: pipe.utility, px };
    }
  }
  return best;
}

function screenOf(position) {
  return Cesium.SceneTransforms.worldToWindowCoordinates(world.scene, position);
}

/** The nearest candidate on the screen within `tolerance` px of `screen` (Cartesian2): a node
 * (or a pipe's end, which is its node) before a pipe's interior vertex; null when none. Each
 * result carries `px` (its distance on the screen). `skip(c)` leaves candidates out. */
export function nearest(candidates, screen, tolerance = TOLERANCE_PX, skip = null) {
  let node = null;
  let vertex = null;
  for (const c of candidates) {
    if (skip && skip(c)) continue;
    const p = screenOf(c.position);
    if (!p) continue;
    const px = Math.hypot(p.x - screen.x, p.y - screen.y);
    if (px > tolerance) continue;
    const isNode = c.kind === 'node' || c.node;
    if (isNode && (!node || px < node.px)) node = { ...c, px };
    else if (!isNode && (!vertex || px < vertex.px)) vertex = { ...c, px };
  }
  if (node && node.kind === 'vertex') node = { ...node, kind: 'node', id: node.node, pipe: node.id };
  return node || vertex;
}

/** Where the cursor is: {snap (a candidate or null), lon, lat, h, position}; the ground (or the
 * pipe's surface) under it when nothing is near. Null off the globe. */
export async function snapAt(screen, { skip = null, surface = null } = {}) {
  const ground = surface || groundUnder(screen);
  if (!ground) return null;
  const g = toCartographic(ground);
  const snap = nearest(await candidatesNear(g.lon, g.lat), screen, TOLERANCE_PX, skip);
  if (snap) return { snap, lon: snap.lon, lat: snap.lat, h: snap.h, position: snap.position };
  return { snap: null, lon: g.lon, lat: g.lat, h: g.height, position: ground };
}

function groundUnder(screen) {
  const ray = world.camera.getPickRay(screen);
  if (!ray) return undefined;
  const p = world.scene.globe.show ? world.scene.globe.pick(ray, world.scene) : undefined;
  if (p) return p;
  // No globe drawn: the ellipsoid at the mean ground height, as the tools' groundAt does.
  const z = (world.frame && world.frame.ground_z ? world.frame.ground_z.mean : 0) + heightOffset();
  const ellipsoid = new Cesium.Ellipsoid(6378137.0 + z, 6378137.0 + z, 6356752.314245179 + z);
  const hit = Cesium.IntersectionTests.rayEllipsoid(ray, ellipsoid);
  return hit ? Cesium.Ray.getPoint(ray, hit.start) : undefined;
}

// ------------------------------------------------------------------ marks while drawing
/** The ring on the snapped point and the rubber band from the start: entities of `layer`. */
export class SnapMarks {
  constructor(layer) {
    this.layer = layer;
    this.ring = null;
    this.band = null;
    this.start = null;
    this.cursor = null;
  }

  /** Show where the cursor is (a snapAt result); a ring when snapped, a dot when not. */
  show(at) {
    this.cursor = at ? at.position : null;
    if (!at) {
      if (this.ring) this.ring.show = false;
      return;
    }
    if (!this.ring) {
      this.ring = this.layer.entities.add({
        position: at.position,
        point: { pixelSize: 2 * TOLERANCE_PX, color: Cesium.Color.TRANSPARENT, outlineColor: Cesium.Color.YELLOW,
          outlineWidth: 3, disableDepthTestDistance: Number.POSITIVE_INFINITY },
      });
    }
    this.ring.show = true;
    this.ring.position = at.position;
    const snapped = Boolean(at.snap);
    this.ring.point.pixelSize = snapped ? 2 * TOLERANCE_PX : 8;
    this.ring.point.color = snapped ? Cesium.Color.TRANSPARENT : Cesium.Color.YELLOW.withAlpha(0.6);
    this.ring.point.outlineColor = snapped ? Cesium.Color.fromCssColorString('#ffd60a') : Cesium.Color.BLACK;
  }

  /** Start a rubber band at a Cartesian3 (null ends it). */
  anchor(position) {
    this.start = position;
    if (position && !this.band) {
      this.band = this.layer.entities.add({
        polyline: {
          positions: new Cesium.CallbackProperty(() => (this.start && this.cursor ? [this.start, this.cursor] : []), false),
          width: 2, material: new Cesium.PolylineDashMaterialProperty({ color: Cesium.Color.fromCssColorString('#ffd60a') }),
          depthFailMaterial: new Cesium.PolylineDashMaterialProperty({ color: Cesium.Color.fromCssColorString('#ffd60a').withAlpha(0.5) }),
        },
      });
    }
    if (this.band) this.band.show = Boolean(position);
  }

  clear() {
    this.layer.entities.removeAll();
    this.ring = null;
    this.band = null;
    this.start = null;
    this.cursor = null;
  }
}
