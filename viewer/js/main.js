// PipeTwin's web viewer: sign in, then the underground network in 3D with every analysis one
// click away. Plain ES modules over CesiumJS (loaded as a classic script before this one).

/* global Cesium */

import { ApiError, can, getJSON, onUnauthorised, request, session, signIn } from './api.js';
import { langSwitch, onLang, restoreLang, setLang, setVocabulary, tr } from './i18n.js';
import { $, $$, clearPanel, guard, hint, shownErrors, showError } from './ui.js';
import { boundCamera, loadOverview, viewDistrict, createScene, firstPictureDrawn, groundDrawn, groundHeight, loadGround, loadTileset, lookDownAt,
  openTileset, timing, viewAll, world } from './scene.js';
import { display, makeStyle, utilityCss } from './style.js';
import { activate, activeTool, listen, pickAt, restyle } from './tools.js';
import { exportView, initLayers } from './layers.js';
import { initSearch, go as searchGo, showRoad } from './search.js';
import { showFeature } from './inspect.js';
import * as shutoff from './shutoff.js';
import * as sectionTool from './section.js';
import * as profile from './profile.js';
import * as measure from './measure.js';
import * as proposal from './proposal.js';
import * as hazards from './hazards.js';
import * as live from './live.js';
import * as shutdowns from './shutdowns.js';
import * as criticality from './criticality.js';
import * as findings from './findings.js';
import * as stats from './stats.js';
import * as history from './history.js';
import * as field from './field.js';
import * as edit from './edit.js';
import { checkFreshness, watchFreshness } from './freshness.js';
import { initRoads, roadsState } from './roads.js';
import { initLayout } from './layout.js';
import { chipList } from './chips.js';

const MESSAGE = 'pipetwin.signin-message';

// ------------------------------------------------------------------ sign-in
function showSignIn() {
  $('#app').hidden = true;
  const page = $('#signin');
  page.hidden = false;
  const message = sessionStorage.getItem(MESSAGE);
  sessionStorage.removeItem(MESSAGE);
  $('#signin-error').textContent = message || '';
  $('#signin-error').hidden = !message;
  const form = $('#signin-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    $('#signin-error').hidden = true;
    try {
      await signIn($('#signin-user').value.trim(), $('#signin-password').value);
      page.hidden = true;
      await startApp();
    } catch (err) {
      $('#signin-error').textContent = err instanceof ApiError ? err.description : String(err.message || err);
      $('#signin-error').hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  $('#signin-user').focus();
}

function signOut(message) {
  session.clear();
  if (message) sessionStorage.setItem(MESSAGE, message);
  window.location.reload();
}

// ------------------------------------------------------------------ the app
function wireChrome() {
  const s = session.get();
  $('#user-name').textContent = s.user;
  $('#user-role').textContent = s.role;
  $('#sign-out').addEventListener('click', () => signOut());
  langSwitch($('#lang-toggle'), (lang) => guard(tr('保存语言', 'Saving the language'),
    () => request('/me/preferences', { method: 'PUT', json: { lang } })));
  onLang(() => hint(activeTool()?.hint || '')); // the tool's hint line in the new language
  for (const b of $$('#tools button[data-tool]')) {
    b.addEventListener('click', () => {
      const tool = activeTool();
      activate(tool && tool.id === b.dataset.tool && b.dataset.tool !== 'inspect' ? 'inspect' : b.dataset.tool);
      if (window.matchMedia('(max-width: 760px)').matches) document.body.classList.remove('layers-open');
    });
  }
  if (!can('analyse')) $$('#tools button[data-needs=analyse]').forEach((b) => { b.disabled = true; });
  $$('#tools button[data-needs=edit]').forEach((b) => { b.hidden = !can('edit'); }); // editors only
  $('#toggle-layers').addEventListener('click', () => {
    document.body.classList.toggle('layers-open');
    if (window.matchMedia('(max-width: 760px)').matches) document.body.classList.remove('panel-open');
  });
  $('#toggle-panel').addEventListener('click', () => {
    document.body.classList.toggle('panel-open');
    if (window.matchMedia('(max-width: 760px)').matches) document.body.classList.remove('layers-open');
  });
  $('#panel-close').addEventListener('click', () => document.body.classList.remove('panel-open'));
  // Wide screens start with the layers open and the details closed until something is selected
  // (the map keeps at least 800 px: layout.js); phones with the map alone.
  if (!window.matchMedia('(max-width: 760px)').matches) document.body.classList.add('layers-open');
  initLayout();
}

async function startApp() {
  timing.signedIn = performance.now();
  // Who I am, what I may do and my language (stored for each user: the 中/EN switch).
  const s = session.get();
  const me = await getJSON('/me');
  // The first picture's requests next (the session holds): the tileset and the district's frame
  // go out before the app's text asks for its font files (6 connections to the server).
  const opened = openTileset();
  opened.catch(() => {}); // its error is shown where it is awaited
  const frame = getJSON('/view/frame');
  frame.catch(() => {});
  session.set({ ...s, permissions: me.permissions, user: me.name, role: me.role });
  setLang(me.lang);
  await guard(tr('读取名称表', 'Reading the names of codes'), async () => setVocabulary(await getJSON('/view/vocabulary')));
  $('#app').hidden = false;
  wireChrome();
  shutdowns.init(); // before the scene loads: a crew on a phone needs the list, not the 3D
  findings.init();
  stats.init();
  clearPanel();
  createScene($('#map'));
  listen();
  activate('inspect');
  initSearch();
  // The first picture is the pipes: the ground's terrain and the roads (work in the same workers
  // and frames as the tiles' meshes) wait for the first tile on screen, 20 s at most.
  let tilesShown;
  const firstTiles = new Promise((resolve) => { tilesShown = resolve; setTimeout(resolve, 20_000); })
    .then(firstPictureDrawn); // the ground shows with the first pipes, or without them after 20 s
  const ground = guard(tr('地表', 'The ground surface'), async () => {
    world.frame = await frame;
    if (world.frame.bbox) boundCamera(world.frame.bbox);
    if (!world.tileset) viewDistrict(world.frame); // the first view opens on the district
    // The first picture: the overview lines (the pipes' minimum on-screen width from afar, in
    // utility colours when the map shows those) at once, while the ground and the tiles come.
    const overview = guard(tr('管网概览', 'The overview lines'), () => loadOverview(utilityCss,
      () => display.colourBy === 'utility' && !display.only && !display.onlySubtype && !display.fadeUnmarked,
      () => display.hiddenUtilities));
    await firstTiles;
    await loadGround();
    await initRoads(); // on the ground: after it
    await overview;
  });
  const layers = initLayers();
  criticality.init();
  try {
    await loadTileset(makeStyle(), opened);
    const shown = world.tileset.tileVisible.addEventListener(() => { shown(); tilesShown(); });
    viewAll(0);
  } catch (err) {
    tilesShown();
    if (err instanceof ApiError && err.status === 401) return;
    showError(err, tr('载入三维瓦片', 'Loading the 3D tiles'));
  }
  world.tileset?.tileFailed.addEventListener((e) => showError({ message: e.message }, `${tr('瓦片', 'Tile')} ${e.url}`));
  await Promise.all([ground, layers]);
  live.start();
  if (world.tileset) watchFreshness(reloadTileset);
  await groundDrawn(); // the ground's first frames (new shaders) behind us
  hooks.ready = true;
}

/** Replace the tileset on screen with the server's newer one, keeping its style. */
async function reloadTileset() {
  const old = world.tileset;
  await loadTileset(old ? old.style : makeStyle());
  if (old) world.scene.primitives.remove(old);
}

// ------------------------------------------------------------------ test and automation hooks
function contentTiles() {
  let ready = 0;
  let total = 0;
  const walk = (tile) => {
    if (tile.hasRenderableContent) {
      total += 1;
      if (tile.contentReady) ready += 1;
    }
    tile.children.forEach(walk);
  };
  if (world.tileset) walk(world.tileset.root);
  return { ready, total };
}

const hooks = {
  ready: false,
  world,
  display,
  timing,
  activate: (id) => activate(id).id,
  tilesLoaded: () => Boolean(world.tileset && world.tileset.tilesLoaded),
  contentTiles,
  failedTiles: () => world.failedTiles.slice(),
  errors: () => shownErrors(),
  /** The camera close above a point given in ECEF metres. */
  lookDownAt: (x, y, z, range) => lookDownAt(new Cesium.Cartesian3(x, y, z), range),
  /** What lies under the middle of the map (as a click there would see it). */
  pickCentre: () => {
    const c = world.scene.canvas;
    const p = pickAt(new Cesium.Cartesian2(c.clientWidth / 2, c.clientHeight / 2));
    return p.props;
  },
  showFeature: (kind, id) => showFeature(kind, id, null, { fly: true }),
  search: (q) => searchGo(q),
  showRoad: (name) => showRoad(name),
  shutoff: (pipe, failed = []) => activate('shutoff').run(pipe, failed),
  shutoffState: () => shutoff.shutoffState().result,
  section: (line) => { activate('section'); return sectionTool.runLine(line); },
  sectionLonLat: (line) => { activate('section'); return sectionTool.runLonLat(line); },
  sectionState: () => ({ line: sectionTool.sectionState().twinLine || null, result: sectionTool.sectionState().result }),
  clearSection: () => sectionTool.clear(),
  clipping: () => Boolean(world.tileset && world.tileset.clippingPlanes && world.tileset.clippingPlanes.enabled),
  profile: (from, to) => { activate('profile'); return profile.run(from, to); },
  profileState: () => profile.profileState().result,
  proposal: (doc, name) => { activate('proposal'); return proposal.submit(doc, name); },
  proposalState: () => proposal.proposalState().report,
  proposalDrawn: () => Boolean(proposal.proposalState().drawn),
  groundHeight: (lon, lat) => groundHeight(lon, lat),
  measure,
  hazards: (lon, lat) => { activate('hazards'); return hazards.run(lon, lat); },
  restyle,
  live: { state: () => live.liveState(), open: () => live.openPanel(), chart: (id) => live.showChart(id) },
  shutdowns: { list: () => shutdowns.openList(), open: (id) => shutdowns.open(id), plan: (body) => shutdowns.plan(body),
    planForm: (pipe) => shutdowns.planForm(pipe), state: () => shutdowns.shutdownsState() },
  criticality: { toggle: (on = true) => criticality.toggle(on), state: () => criticality.criticalityState() },
  findings: { list: (filters) => findings.openList(filters), zoomTo: (f) => findings.zoomTo(f),
    state: () => findings.findingsState() },
  freshness: { check: () => checkFreshness(), reload: () => reloadTileset() },
  roads: () => roadsState(),
  chips: () => chipList(),
  history: { open: () => activate('history').id, show: (to, from) => history.show({ to, from }),
    state: () => history.historyState() },
  field: {
    whereAmI: () => (activeTool() && activeTool().id === 'field' ? field.whereAmI() : (activate('field'), field.pending())),
    state: () => field.fieldState(),
  },
  edit: { state: () => edit.editState(), select: (kind, id) => { activate('edit'); return edit.select(kind, id); },
    undo: () => edit.undoLast() },
  stats: { open: () => stats.openStats(), state: () => stats.statsState(), barAt: (by, i) => stats.barAt(by, i),
    showAll: () => stats.showAll(), exportPng: () => exportView() },
  /** Screen position (CSS px) of a point given in lon/lat/height, or null when off screen. */
  toScreen: (lon, lat, h) => {
    const p = Cesium.SceneTransforms.worldToWindowCoordinates(world.scene, Cesium.Cartesian3.fromDegrees(lon, lat, h));
    return p ? [p.x, p.y] : null;
  },
};
window.twinViewer = hooks;

// ------------------------------------------------------------------ boot
onUnauthorised((message) => signOut(message || tr('会话已结束，请重新登录。', 'Your session has ended; sign in again.')));
window.addEventListener('unhandledrejection', (e) => {
  e.preventDefault();
  showError(e.reason, tr('意外错误', 'Unexpected'));
});

restoreLang();
if (session.get()) {
  startApp().catch((err) => {
    if (err instanceof ApiError && err.status === 401) return;
    showError(err, tr('启动', 'Starting'));
  });
} else {
  showSignIn();
}
