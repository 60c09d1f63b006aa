// The viewer's language: Chinese (zh-CN) first, English on the user's switch.
//
// Every text the viewer shows is written at its call site as a pair, Chinese first:
//   tr('关阀分析', 'Shutoff')
// so both languages stay side by side in the code and nothing is looked up by key. Static text of
// index.html carries its English in `data-en` (and `data-en-title`, `data-en-placeholder`,
// `data-en-aria-label`); applyStatic() swaps it in when English is chosen.

const STORE = 'pipetwin.lang';
let current = 'zh-CN';
const listeners = new Set();

/** The language in use: 'zh-CN' (default) or 'en'. */
export function lang() {
  return current;
}

/** The text in the language in use: tr('雨水', 'storm water'). */
export function tr(zh, en) {
  return current === 'en' && en ? en : zh;
}

/** Choose a language; listeners redraw. Remembered in the browser until the server confirms. */
export function setLang(value) {
  current = value === 'en' ? 'en' : 'zh-CN';
  try { localStorage.setItem(STORE, current); } catch (_) { /* private mode */ }
  document.documentElement.lang = current;
  applyStatic(document);
  for (const fn of listeners) fn(current);
}

/** Call fn(lang) whenever the language changes. */
export function onLang(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The language remembered in this browser, before the user's own setting is read. */
export function restoreLang() {
  let saved = null;
  try { saved = localStorage.getItem(STORE); } catch (_) { /* private mode */ }
  setLang(saved || 'zh-CN');
}

const ATTRS = ['title', 'placeholder', 'aria-label'];

/** Swap the static texts of `root` (index.html) into the language in use. */
export function applyStatic(root) {
  for (const node of root.querySelectorAll('[data-en]')) {
    if (node.dataset.zh === undefined) node.dataset.zh = node.textContent;
    node.textContent = tr(node.dataset.zh, node.dataset.en);
  }
  for (const attr of ATTRS) {
    const key = `en${attr.replace(/(^|-)(\w)/g, (_, __, c) => c.toUpperCase())}`;
    const zhKey = `zh${key.slice(2)}`;
    for (const node of root.querySelectorAll(`[data-en-${attr}]`)) {
      if (node.dataset[zhKey] === undefined) node.dataset[zhKey] = node.getAttribute(attr) || '';
      node.setAttribute(attr, tr(node.dataset[zhKey], node.dataset[key]));
    }
  }
}
