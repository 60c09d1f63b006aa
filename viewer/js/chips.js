// Chips over the map (叠加标签): one for every active cut, overlay, filter or analysis result on
// the map (section cut, roads, thematic colouring, a filter, a shutoff, a proposal ...), each
// with × to remove it. Any module calls addChip(id, label, onRemove) when it puts something on
// the map and removeChip(id) when it takes it off; × calls onRemove and takes the chip away.

import { tr } from './i18n.js';
import { display } from './style.js';

const chips = new Map();

function bar() {
  let node = document.getElementById('chips');
  if (!node) {
    node = document.createElement('div');
    node.id = 'chips';
    node.setAttribute('role', 'toolbar');
    node.setAttribute('aria-label', tr('地图上的叠加内容', 'What is on the map'));
    (document.getElementById('app') || document.body).append(node);
  }
  return node;
}

/** Show (or relabel) the chip `id`; × calls `onRemove` and removes the chip. `label` is a text
 * or a pair ['中文', 'English'] in the language in use. */
export function addChip(id, label, onRemove) {
  if (Array.isArray(label)) label = tr(label[0], label[1]); // eslint-disable-line no-param-reassign
  const old = chips.get(id);
  const node = old ? old.node : document.createElement('span');
  node.className = 'chip';
  node.dataset.chip = id;
  const text = document.createElement('span');
  text.textContent = label;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'chip-close';
  close.textContent = '×';
  close.setAttribute('aria-label', `${tr('移除', 'Remove')} ${label}`);
  close.title = tr('移除', 'Remove');
  close.addEventListener('click', () => {
    removeChip(id);
    if (onRemove) onRemove();
  });
  node.replaceChildren(text, close);
  chips.set(id, { node, label, onRemove });
  if (!old) bar().append(node);
  bar().hidden = false;
}

/** Take the chip `id` away (nothing when there is none). */
export function removeChip(id) {
  const chip = chips.get(id);
  if (!chip) return;
  chip.node.remove();
  chips.delete(id);
  if (!chips.size) bar().hidden = true;
}

/** The chips shown: [{id, label}]. */
export function chipList() {
  return [...chips.entries()].map(([id, c]) => ({ id, label: c.label }));
}

// ------------------------------------------------------------------ chips of the display state
const resets = { filter: null, theme: null };

/** How the filter and the thematic colouring are reset (the layers panel gives these). */
export function setResets(fns) {
  Object.assign(resets, fns);
}

/** The filter and thematic-colouring chips from the display state (called on every restyle). */
export function syncDisplayChips() {
  const hidden = display.hiddenUtilities.size;
  if (display.only || display.onlySubtype || hidden) {
    const what = display.only ? `${display.only.property} = ${display.only.values.join(', ') || '–'}`
      : display.onlySubtype || tr(`${hidden} 类管线已隐藏`, `${hidden} utilities hidden`);
    addChip('filter', `${tr('筛选', 'Filter')}: ${what}`, () => resets.filter && resets.filter());
  } else {
    removeChip('filter');
  }
  if (display.colourBy && display.colourBy !== 'utility') {
    const named = display.themeLabel;
    const label = Array.isArray(named) ? tr(named[0], named[1]) : named || display.colourBy;
    addChip('theme', `${tr('专题图', 'Thematic map')}: ${label}`,
      () => resets.theme && resets.theme());
  } else {
    removeChip('theme');
  }
}
