// Layout and access (布局与无障碍): the map keeps at least MIN_MAP_PX of width on wide screens
// (opening one side panel folds the other when both would leave less), and the tools are
// reached from the keyboard: Tab to the tool row, arrow keys (Home, End) along it, Enter or
// Space to choose; digits 1-9 choose a tool anywhere but in a text field; Esc ends a tool.

/** The narrowest map (CSS px) the side panels may leave on a wide screen. */
export const MIN_MAP_PX = 800;
const PHONE = '(max-width: 760px)';

function px(name) {
  return parseFloat(getComputedStyle(document.documentElement).getPropertyValue(name)) || 0;
}

/** Map width (px) with the panels as the body's classes say. */
export function mapWidth(classes = document.body.classList) {
  if (window.matchMedia(PHONE).matches) return window.innerWidth;
  return window.innerWidth - (classes.contains('layers-open') ? px('--left-w') : 0)
    - (classes.contains('panel-open') ? px('--right-w') : 0);
}

/** Fold the panel opened before when the one just opened would leave the map too narrow. */
function keepMapWide() {
  let before = new Set(document.body.classList);
  new MutationObserver(() => {
    const now = document.body.classList;
    const opened = ['layers-open', 'panel-open'].filter((c) => now.contains(c) && !before.has(c));
    before = new Set(now);
    if (!opened.length || window.matchMedia(PHONE).matches || mapWidth(now) >= MIN_MAP_PX) return;
    const other = opened.includes('panel-open') ? 'layers-open' : 'panel-open';
    if (now.contains(other)) now.remove(other);
    before = new Set(now);
  }).observe(document.body, { attributes: true, attributeFilter: ['class'] });
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable ||
    ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}

/** Arrow keys along the tool row; digits choose a tool; the buttons say their key. */
function toolKeys() {
  const row = document.getElementById('tools');
  if (!row) return;
  const buttons = () => [...row.querySelectorAll('button[data-tool]')].filter((b) => !b.disabled);
  [...row.querySelectorAll('button[data-tool]')].forEach((b, i) => {
    if (i < 9) b.setAttribute('aria-keyshortcuts', String(i + 1));
    if (!b.getAttribute('aria-label') && !b.textContent.trim()) b.setAttribute('aria-label', b.title || b.dataset.tool);
  });
  row.addEventListener('keydown', (e) => {
    const list = buttons();
    const i = list.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: list.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    const b = list[(next + list.length) % list.length];
    b.focus();
    b.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  });
  document.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target) || !/^[1-9]$/.test(e.key)) return;
    const b = row.querySelectorAll('button[data-tool]')[Number(e.key) - 1];
    if (b && !b.disabled) {
      e.preventDefault();
      b.click();
    }
  });
}

/** Wire the layout rules and the keyboard once the app is shown. */
export function initLayout() {
  keepMapWide();
  toolKeys();
}
