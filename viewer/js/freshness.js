// Is the 3D view in step with the data? Each tileset carries the twin's change mark it was
// built at (tileset.json extras.pipetwin.changes); GET /view/frame gives the twin's mark now.
// When they differ a banner says so: while the server rebuilds, then with a button to load the
// newer tileset once it is there. A tileset of another twin is refused by the server (409).

import { tr } from './i18n.js';
import { getJSON } from './api.js';
import { world } from './scene.js';

const EVERY_MS = 30000;
let timer = null;

/** The mark of the tileset on screen, of the tileset on the server now, and of the twin. */
async function marks() {
  const [frame, served] = await Promise.all([getJSON('/view/frame'), getJSON('/tiles/tileset.json')]);
  return {
    shown: world.tileset?.extras?.pipetwin?.changes ?? null,
    served: served?.extras?.pipetwin?.changes ?? null,
    twin: frame.changes ?? null,
  };
}

function banner() {
  return document.getElementById('tiles-behind');
}

/** Look now: show, update or hide the banner. Returns the state (for tests): 'current',
 * 'rebuilding' (the server's tileset is behind too) or 'newer' (a reload brings it up). */
export async function checkFreshness() {
  const m = await marks();
  const box = banner();
  let state = 'current';
  if (m.shown !== m.twin) state = m.served === m.twin ? 'newer' : 'rebuilding';
  if (box) {
    box.hidden = state === 'current';
    box.dataset.state = state;
    box.querySelector('.msg').textContent = state === 'newer'
      ? tr('三维视图落后于数据：新的三维瓦片已生成', 'The 3D view is behind the data: newer tiles are ready')
      : tr('三维视图落后于数据：正在重建三维瓦片', 'The 3D view is behind the data: the tiles are being rebuilt');
    box.querySelector('button').hidden = state !== 'newer';
  }
  return state;
}

/** Watch the marks every 30 s; ``reload()`` replaces the tileset on screen. */
export function watchFreshness(reload) {
  const box = banner();
  box?.querySelector('button')?.addEventListener('click', async () => {
    await reload();
    await checkFreshness();
  });
  const tick = () => checkFreshness().catch(() => {});
  tick();
  clearInterval(timer);
  timer = setInterval(tick, EVERY_MS);
}
