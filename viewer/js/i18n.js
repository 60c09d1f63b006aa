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

/** The locale for Intl formats of the language in use. */
export function locale() {
  return current === 'en' ? 'en-GB' : 'zh-CN';
}

// ------------------------------------------------------------------ names of codes
// The server names every code the viewer shows (GET /view/vocabulary: utilities, subtypes,
// burial, statuses, finding kinds, column labels ...), Chinese and English, from the one place
// each list is declared. No second dictionary of codes lives here.
let words = {};

/** The server's vocabulary ({category: {code: [zh, en]}, column: {kind: {name: [zh, en, unit]}}}). */
export function setVocabulary(v) {
  words = v || {};
  for (const fn of listeners) fn(current);
}

/** A code spelled out in the language in use: named('burial', 'ZM') -> '直埋'; unknown codes as
 * they are. */
export function named(category, code) {
  if (code === undefined || code === null || code === '') return code;
  const w = (words[category] || {})[String(code)];
  return w ? tr(w[0], w[1]) : String(code);
}

/** Whether the vocabulary names this code. */
export function knows(category, code) {
  return Boolean((words[category] || {})[String(code)]);
}

/** A column's label from the catalogue, with its unit: colLabel('segment', 'diameter_mm') ->
 * '管径 (mm)'. Kinds are tried in order; unknown names read with spaces. */
export function colLabel(kinds, name, { unit = true } = {}) {
  for (const kind of [].concat(kinds, ['segment', 'node', 'valve', 'source', 'customer', 'proposal'])) {
    const w = ((words.column || {})[kind] || {})[name];
    if (w) return unit && w[2] ? `${tr(w[0], w[1])} (${w[2]})` : tr(w[0], w[1]);
  }
  return String(name).replace(/_/g, ' ');
}

/** The language switch: a button that shows the other language; `save(lang)` stores it. */
export function langSwitch(button, save) {
  const label = () => {
    button.textContent = current === 'en' ? '中' : 'EN';
    button.title = current === 'en' ? '切换到中文 Switch to Chinese' : 'Switch to English 切换到英文';
    button.setAttribute('aria-label', button.title);
    button.lang = current === 'en' ? 'zh-CN' : 'en';
  };
  label();
  onLang(label);
  button.addEventListener('click', async () => {
    const next = current === 'en' ? 'zh-CN' : 'en';
    setLang(next);
    await save(next);
  });
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
