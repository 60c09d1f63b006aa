// The 3D scene: CesiumJS offline (no ion, no internet), the underground view, the tileset,
// the survey's ground as terrain, and the camera and picking helpers the tools use.

/* global Cesium */

import { authHeaders, getJSON } from './api.js';

export const timing = { start: performance.now() };

/** The scene, once made: {widget, scene, camera, tileset, frame, ground}; `firstPicture` once the
 * first pipes are on screen (the ground and FXAA are on from then). */
export const world = {
  widget: null, scene: null, camera: null, tileset: null, frame: null, ground: null,
  failedTiles: [], loadedTiles: 0, firstPicture: false,
};

const GROUND_COLOUR = '#6f6a5c';

export function createScene(container) {
  // Nothing from Cesium ion: no token, no default imagery or terrain.
  Cesium.Ion.defaultAccessToken = '';
  const widget = new Cesium.CesiumWidget(container, {
    baseLayer: false,
    terrainProvider: new Cesium.EllipsoidTerrainProvider(),
    skyBox: false,
    skyAtmosphere: false,
    shadows: false,
    showRenderLoopErrors: true,
    msaaSamples: 1,
  });
  const scene = widget.scene;
  scene.backgroundColor = Cesium.Color.fromCssColorString('#14171b');
  scene.fog.enabled = false;
  if (scene.sun) scene.sun.show = false;
  if (scene.moon) scene.moon.show = false;
  scene.highDynamicRange = false;
  scene.postProcessStages.fxaa.enabled = false; // on with the ground, after the first pipes

  const globe = scene.globe;
  globe.baseColor = Cesium.Color.fromCssColorString(GROUND_COLOUR);
  globe.showGroundAtmosphere = false;
  globe.enableLighting = false;
  globe.dynamicAtmosphereLighting = false; // unlit: a smaller shader to compile
  globe.depthTestAgainstTerrain = false;
  // The underground view: the ground is see-through near the camera, firmer far away.
  globe.translucency.enabled = true;
  globe.undergroundColor = undefined;
  setGroundOpacity(0.3);
  globe.show = false; // until the first pipes are drawn (firstPictureDrawn)
  const controller = scene.screenSpaceCameraController;
  controller.enableCollisionDetection = false; // the camera may go below the ground
  controller.minimumZoomDistance = 1.0;
  scene.pickTranslucentDepth = true;

  seedBrdfTable(scene);
  Object.assign(world, { widget, scene, camera: widget.camera });
  const first = scene.postRender.addEventListener(() => {
    first();
    timing.firstFrame = performance.now();
  });
  return world;
}

/** The split-sum BRDF table of the models' image-based lighting (256 x 256: scale and bias of
 * the specular reflectance by the view angle and the roughness), made at once in JavaScript from
 * Karis' analytic fit (Physically Based Shading on Mobile, 2014). CesiumJS would integrate it on
 * the GPU with 1,024 samples a texel the first time a model is drawn: 4 to 8 s of software WebGL
 * before the first pipes. The table is the scene's own (`_brdfLutGenerator`, CesiumJS 1.145):
 * with a texture there, CesiumJS does not make one. */
function seedBrdfTable(scene) {
  const generator = scene._brdfLutGenerator;
  if (!generator || generator.colorTexture) return;
  const n = 256;
  const texels = new Uint8Array(n * n * 4);
  const byte = (v) => Math.round(Math.min(Math.max(v, 0), 1) * 255);
  for (let j = 0; j < n; j += 1) {
    const roughness = (j + 0.5) / n; // the table's rows (t)
    const r0 = 1 - roughness;
    const r1 = 0.0425 - 0.0275 * roughness;
    const r2 = 1.04 - 0.572 * roughness;
    const r3 = 0.022 * roughness - 0.04;
    for (let i = 0; i < n; i += 1) {
      const nDotV = (i + 0.5) / n; // its columns (s)
      const a004 = Math.min(r0 * r0, 2 ** (-9.28 * nDotV)) * r0 + r1;
      const k = 4 * (j * n + i);
      texels[k] = byte(r2 - 1.04 * a004);
      texels[k + 1] = byte(r3 + 1.04 * a004);
      texels[k + 3] = 255;
    }
  }
  generator._colorTexture = new Cesium.Texture({
    context: scene.context, width: n, height: n, flipY: false,
    pixelFormat: Cesium.PixelFormat.RGBA, pixelDatatype: Cesium.PixelDatatype.UNSIGNED_BYTE,
    sampler: Cesium.Sampler.NEAREST, source: { width: n, height: n, arrayBufferView: texels },
  });
}

/** The rest of the scene once the first pipes are on screen (or the tiles failed or were late):
 * the see-through ground and FXAA. Until then a frame draws the pipes and the overview lines
 * alone: the translucent ground is several passes a frame and the largest shader of the scene
 * (1 to 5 s to compile in software WebGL), and every frame while the first tile loads is one
 * step of its loader. Once only. */
export function firstPictureDrawn() {
  if (world.firstPicture || !world.scene) return;
  world.firstPicture = true;
  world.scene.globe.show = (world.groundOpacity ?? 0.3) > 0;
  world.scene.postProcessStages.fxaa.enabled = true;
}

/** Resolves once a frame has drawn the ground with its terrain loaded (its shaders compiled: seconds
 * in software WebGL), or after `maxMs`: the page is then ready to answer without a long frame. */
export function groundDrawn(maxMs = 15_000) {
  return new Promise((resolve) => {
    const scene = world.scene;
    const give = setTimeout(() => { done(); resolve(); }, maxMs);
    const done = scene.postRender.addEventListener(() => {
      if (scene.globe.show && !scene.globe.tilesLoaded) return;
      clearTimeout(give);
      done();
      resolve();
    });
  });
}

/** Ground opacity (0..1) far away; near the camera it is a third of that. */
export function setGroundOpacity(alpha) {
  const t = world.scene ? world.scene.globe.translucency : null;
  const globe = world.scene ? world.scene.globe : null;
  if (!t) return;
  t.frontFaceAlphaByDistance = new Cesium.NearFarScalar(50.0, Math.max(0.05, alpha / 3), 5000.0, alpha);
  t.backFaceAlpha = Math.max(0.05, alpha / 3);
  globe.show = alpha > 0 && Boolean(world.firstPicture);
}

export function showGround(show) {
  world.scene.globe.show = show;
}

let naturalEarth = null;

/** The package's own offline Natural Earth II imagery on the globe, or none. */
export async function showImagery(show) {
  const layers = world.scene.imageryLayers;
  if (show && !naturalEarth) {
    const provider = await Cesium.TileMapServiceImageryProvider.fromUrl(
      Cesium.buildModuleUrl('Assets/Textures/NaturalEarthII'));
    naturalEarth = layers.addImageryProvider(provider);
  }
  if (naturalEarth) naturalEarth.show = show;
}

/** Read the server's tileset.json (the session's token on it and on every tile request) and
 * make the tileset, before there is a scene: called first thing after the sign-in, so its
 * request is not queued behind the page's fonts. Shown by `loadTileset`. */
export function openTileset() {
  const resource = new Cesium.Resource({ url: '/tiles/tileset.json', headers: authHeaders() });
  return Cesium.Cesium3DTileset.fromUrl(resource, {
    maximumScreenSpaceError: 16,
    // Keep the pipes' own shading: the style colours replace the material colours.
    colorBlendMode: Cesium.Cesium3DTileColorBlendMode.REPLACE,
    // Light from the default sky, not a sky map rendered at the pipes: CesiumJS would render the
    // atmosphere into a cube map and filter it (three shaders, seconds of software WebGL before
    // the first pipes) for a shading the style's colours replace anyway.
    environmentMapOptions: { enabled: false },
  });
}

/** Show a tileset (`opened`: an `openTileset()` under way, else a new one) in the scene. */
export async function loadTileset(style, opened = null) {
  const tileset = await (opened || openTileset());
  tileset.colorBlendMode = Cesium.Cesium3DTileColorBlendMode.REPLACE;
  tileset.tileFailed.addEventListener((e) => world.failedTiles.push(`${e.url}: ${e.message}`));
  tileset.tileLoad.addEventListener(() => {
    world.loadedTiles += 1;
    if (!timing.firstTileLoad) timing.firstTileLoad = performance.now();
  });
  if (!timing.firstTileVisible) timeFirstPipes(tileset);
  tileset.style = style;
  world.scene.primitives.add(tileset);
  world.tileset = tileset;
  timing.tilesetReady = performance.now();
  return tileset;
}

/** The first tile drawn: `firstTileVisible` (chosen for the frame), `firstPipesFrame` (its
 * commands issued) and `firstPipesShown` (the browser's next frame: software WebGL draws the
 * commands after the frame's events, while the page waits, seconds when a shader is new). */
function timeFirstPipes(tileset) {
  const firstVisible = tileset.tileVisible.addEventListener(() => {
    firstVisible();
    timing.firstTileVisible = performance.now();
    const after = world.scene.postRender.addEventListener(() => {
      after();
      timing.firstPipesFrame = performance.now();
      requestAnimationFrame(() => {
        timing.firstPipesShown = performance.now();
        firstPictureDrawn();
      });
    });
  });
}

/** How far (m) the camera may be for the tileset to draw anything at all: beyond it the error of
 * drawing nothing (the tileset's top geometric error) is below the screen-space error limit. */
export function farthestView() {
  const tileset = world.tileset;
  const scene = world.scene;
  const heightPx = scene.drawingBufferHeight / (scene.pixelRatio || 1);
  const sseDenominator = world.camera.frustum.sseDenominator || 2 * Math.tan(world.camera.frustum.fovy / 2);
  const error = tileset._geometricError ?? tileset.root.geometricError;
  return (error * heightPx) / (tileset.maximumScreenSpaceError * sseDenominator);
}

/** Look at the whole network from above at an angle; a city-wide one from as far as its trunk
 * mains show (the tileset's coarsest level is meant to be seen from that distance). */
export function viewAll(duration = 0) {
  const sphere = world.tileset.boundingSphere;
  const range = Math.max(Math.min(sphere.radius * 2.2, 0.8 * farthestView()), 150);
  world.camera.flyToBoundingSphere(sphere, {
    duration,
    offset: new Cesium.HeadingPitchRange(0.3, -0.75, range),
  });
}

/** Open on the district before any tile has arrived: the camera over the network's extent
 * (/view/frame `bbox`, CRS84) at its ground, from the angle of viewAll(), so the first picture
 * is the district, not the globe, and the tiles the first frames ask for are the district's. */
export function viewDistrict(frame) {
  if (!frame || !frame.bbox) return;
  const [west, south, east, north] = frame.bbox;
  const z = (frame.ground_z ? frame.ground_z.mean : 0) + (frame.geoid_offset_m || 0);
  const corners = [[west, south], [east, north], [west, north], [east, south]]
    .map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, z));
  const sphere = Cesium.BoundingSphere.fromPoints(corners);
  world.camera.flyToBoundingSphere(sphere, {
    duration: 0, offset: new Cesium.HeadingPitchRange(0.3, -0.75, Math.max(sphere.radius * 2.2, 150)),
  });
  timing.districtView = performance.now();
}

// ------------------------------------------------------------------ the overview lines
/** Beyond this distance (m) a pipe's solid is under two pixels wide (a DN300 main at a 60° view
 * 1280 px wide); from there on each pipe is also drawn as a line of OVERVIEW_WIDTH_PX. */
export const OVERVIEW_FROM_M = 150;
const OVERVIEW_WIDTH_PX = 1.5;

/** The pipes' minimum on-screen width at overview distance: every live pipe's centreline (GET
 * /view/overview) as a line in its utility colour, shown from OVERVIEW_FROM_M on, while the map
 * shows utility colours unfiltered (a thematic map, a filter or marks leave the solids alone).
 * `colourOf(code)` gives a utility's css colour, `visible()` whether the lines may show, and
 * `hidden` the set of utilities switched off. */
export async function loadOverview(colourOf, visible, hidden) {
  const r = await getJSON('/view/overview');
  const near = new Cesium.DistanceDisplayCondition(OVERVIEW_FROM_M, Number.MAX_VALUE);
  const sets = new Map();
  for (const [code, u] of Object.entries(r.utilities)) {
    const lines = new Cesium.PolylineCollection();
    const material = Cesium.Material.fromType('Color', { color: Cesium.Color.fromCssColorString(colourOf(code)) });
    const p = u.positions;
    for (let i = 0; i + 1 < u.offsets.length; i += 1) {
      const a = u.offsets[i];
      const b = u.offsets[i + 1];
      if (b - a < 2) continue;
      lines.add({ positions: Cesium.Cartesian3.fromDegreesArrayHeights(p.slice(3 * a, 3 * b)), width: OVERVIEW_WIDTH_PX,
        material, distanceDisplayCondition: near });
    }
    world.scene.primitives.add(lines);
    sets.set(code, lines);
  }
  world.overview = sets;
  const drawn = world.scene.postRender.addEventListener(() => {
    drawn();
    timing.overviewFrame = performance.now(); // the first frame with the overview lines
  });
  world.scene.preRender.addEventListener(() => {
    const on = visible();
    for (const [code, lines] of sets) lines.show = on && !hidden().has(code);
  });
  return sets.size;
}

/** Keep the camera over the network: zooming out stops at a few times the network's size, and a
 * camera beyond its extent (plus a margin of half its size, at least 500 m) is brought back to
 * the nearest place inside, heading and pitch kept. `bbox` is [west, south, east, north]. */
export function boundCamera(bbox) {
  const [west, south, east, north] = bbox;
  const mid = Cesium.Cartographic.fromDegrees((west + east) / 2, (south + north) / 2);
  const diag = Cesium.Cartesian3.distance(Cesium.Cartesian3.fromDegrees(west, south), Cesium.Cartesian3.fromDegrees(east, north));
  const marginDeg = Math.max(diag / 2, 500) / 111320;
  const latMargin = marginDeg;
  const lonMargin = marginDeg / Math.max(Math.cos(mid.latitude), 0.1);
  const maxHeight = Math.max(diag * 2.5, 2000);
  world.scene.screenSpaceCameraController.maximumZoomDistance = maxHeight;
  world.bounds = { west: west - lonMargin, east: east + lonMargin, south: south - latMargin, north: north + latMargin, maxHeight };
  // Checked after every frame: the controller's own limits do not hold with collision detection
  // off (the underground view), and a wheel's inertia moves on after moveEnd.
  world.scene.postRender.addEventListener(keepInBounds);
}

function keepInBounds() {
  const b = world.bounds;
  if (!b) return;
  const c = world.camera.positionCartographic;
  const lon = Cesium.Math.toDegrees(c.longitude);
  const lat = Cesium.Math.toDegrees(c.latitude);
  const cl = Math.min(Math.max(lon, b.west), b.east);
  const ct = Math.min(Math.max(lat, b.south), b.north);
  const h = Math.min(c.height, b.maxHeight);
  if (cl === lon && ct === lat && h === c.height) return;
  world.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(cl, ct, h),
    orientation: { heading: world.camera.heading, pitch: world.camera.pitch, roll: world.camera.roll } });
}

// ------------------------------------------------------------------ the ground as terrain
/** The survey's ground from the server (a lon/lat grid) as the globe's terrain. */
export async function loadGround() {
  const g = await getJSON('/view/ground', { cols: 97, rows: 97 });
  world.ground = g;
  const [west, south, east, north] = g.bbox;
  const cols = g.cols;
  const rows = g.rows;
  const h = Float32Array.from(g.heights);
  const heightAt = (lon, lat) => {
    // Bilinear in the grid; beyond its edge the edge's height.
    const fx = Math.min(Math.max((lon - west) / (east - west), 0), 1) * (cols - 1);
    const fy = Math.min(Math.max((north - lat) / (north - south), 0), 1) * (rows - 1);
    const x0 = Math.min(Math.floor(fx), cols - 2);
    const y0 = Math.min(Math.floor(fy), rows - 2);
    const tx = fx - x0;
    const ty = fy - y0;
    const i = y0 * cols + x0;
    const top = h[i] * (1 - tx) + h[i + 1] * tx;
    const bottom = h[i + cols] * (1 - tx) + h[i + cols + 1] * tx;
    return top * (1 - ty) + bottom * ty;
  };
  world.groundHeightAt = heightAt;
  const size = 33;
  const tiling = new Cesium.GeographicTilingScheme();
  const provider = new Cesium.CustomHeightmapTerrainProvider({
    width: size,
    height: size,
    tilingScheme: tiling,
    callback: (x, y, level) => {
      const r = tiling.tileXYToRectangle(x, y, level);
      const out = new Float32Array(size * size);
      const w = Cesium.Math.toDegrees(r.west);
      const e = Cesium.Math.toDegrees(r.east);
      const n = Cesium.Math.toDegrees(r.north);
      const s = Cesium.Math.toDegrees(r.south);
      for (let row = 0; row < size; row += 1) {
        const lat = n + (s - n) * (row / (size - 1));
        for (let col = 0; col < size; col += 1) {
          out[row * size + col] = heightAt(w + (e - w) * (col / (size - 1)), lat);
        }
      }
      return out;
    },
  });
  world.scene.terrainProvider = provider;
  return g;
}

/** Ellipsoidal height of the ground at a lon/lat (degrees): the survey's ground, or the mean. */
export function groundHeight(lon, lat) {
  if (world.groundHeightAt) return world.groundHeightAt(lon, lat);
  const z = world.frame && world.frame.ground_z ? world.frame.ground_z.mean : 0;
  return z + (world.frame ? world.frame.geoid_offset_m : 0);
}

// ------------------------------------------------------------------ positions
export function toCartographic(cartesian) {
  const c = Cesium.Cartographic.fromCartesian(cartesian);
  return { lon: Cesium.Math.toDegrees(c.longitude), lat: Cesium.Math.toDegrees(c.latitude), height: c.height };
}

export function fromDegrees(lon, lat, height = 0) {
  return Cesium.Cartesian3.fromDegrees(lon, lat, height);
}

/** Where a screen position meets the ground surface (the survey's ground level). */
export function groundAt(screen) {
  const ray = world.camera.getPickRay(screen);
  if (!ray) return undefined;
  if (world.scene.globe.show) {
    const p = world.scene.globe.pick(ray, world.scene);
    if (p) return p;
  }
  // No globe: a level plane at the mean ground height below the network's centre.
  const centre = world.tileset ? world.tileset.boundingSphere.center : Cesium.Cartesian3.ZERO;
  const c = toCartographic(centre);
  const origin = fromDegrees(c.lon, c.lat, groundHeight(c.lon, c.lat));
  const normal = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(origin, new Cesium.Cartesian3());
  const plane = Cesium.Plane.fromPointNormal(origin, normal);
  return Cesium.IntersectionTests.rayPlane(ray, plane) || undefined;
}

/** The 3D position of what is drawn at a screen position (a pipe's surface), if any. */
export function surfaceAt(screen) {
  if (!world.scene.pickPositionSupported) return undefined;
  const p = world.scene.pickPosition(screen);
  return p && Number.isFinite(p.x) ? p : undefined;
}

/** Fly to a lon/lat box (degrees) and heights (ellipsoidal), looking down at an angle. */
export function flyToBox(west, south, east, north, low, high, duration = 1.2) {
  const lo = Number.isFinite(low) ? low : groundHeight((west + east) / 2, (south + north) / 2) - 3;
  const hi = Number.isFinite(high) ? high : lo + 3;
  const pts = [
    fromDegrees(west, south, lo), fromDegrees(east, north, hi), fromDegrees(west, north, lo), fromDegrees(east, south, hi),
  ];
  const sphere = Cesium.BoundingSphere.fromPoints(pts);
  world.camera.flyToBoundingSphere(sphere, {
    duration,
    offset: new Cesium.HeadingPitchRange(world.camera.heading, -0.7, Math.max(sphere.radius * 2.4, 25)),
  });
}

/** Fly to a GeoJSON geometry in CRS84 whose z are normal heights (the features API). */
export function flyToGeometry(geometry, duration = 1.2) {
  const pts = [];
  const walk = (c) => {
    if (typeof c[0] === 'number') pts.push(c);
    else c.forEach(walk);
  };
  walk(geometry.coordinates);
  if (!pts.length) return;
  const offset = world.frame ? world.frame.geoid_offset_m : 0;
  const lons = pts.map((p) => p[0]);
  const lats = pts.map((p) => p[1]);
  const zs = pts.filter((p) => p.length > 2).map((p) => p[2] + offset);
  flyToBox(Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats),
    zs.length ? Math.min(...zs) : undefined, zs.length ? Math.max(...zs) : undefined, duration);
}

/** The camera close above a point (ECEF), looking down at it: for picking what is there. */
export function lookDownAt(cartesian, range = 14.0) {
  world.camera.lookAt(cartesian, new Cesium.HeadingPitchRange(0.0, -1.3, range));
  world.camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
}
