// Small DOM helpers: building elements, the details panel, messages to the user.

import { locale, onLang, tr } from './i18n.js';

/** An element: el('div', {class: 'x', onclick: fn, dataset: {id: 1}}, 'text', child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const numberFormats = new Map();
onLang(() => numberFormats.clear());

/** A number for people in the language's format (1,234.50), fixed decimals, or an en dash when
 * missing. */
export function num(v, digits = 2, unit = '') {
  if (v === undefined || v === null || v === '' || Number.isNaN(Number(v))) return '–';
  const key = `${locale()}/${digits}`;
  let f = numberFormats.get(key);
  if (!f) {
    f = new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
    numberFormats.set(key, f);
  }
  return `${f.format(Number(v))}${unit ? ' ' + unit : ''}`;
}

const WHEN = new Intl.DateTimeFormat('zh-CN', { year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/** A time for people: the browser's local time, "2026-12-03 09:03:11" (not US order, not UTC);
 * PostgreSQL's "+08" offsets are read too. An en dash when missing. */
export function when(t) {
  if (t === undefined || t === null || t === '') return '–';
  const ms = typeof t === 'number' ? t : Date.parse(String(t).replace(/([+-]\d\d)$/, '$1:00'));
  if (Number.isNaN(ms)) return String(t);
  const p = Object.fromEntries(WHEN.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour === '24' ? '00' : p.hour}:${p.minute}:${p.second}`;
}

export function text(v) {
  return v === undefined || v === null || v === '' ? '–' : String(v);
}

/** A two-column table of attributes (label, value) pairs, skipping undefined values. */
export function attributes(rows) {
  return el('table', { class: 'attrs' },
    el('tbody', {}, rows.filter((r) => r && r[1] !== undefined).map(([k, v]) =>
      el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, v instanceof Node ? v : text(v))))));
}

/** A table with a header row; rows are arrays of cells (strings or nodes) or {cells, attrs}. */
export function table(headers, rows, attrs = {}) {
  return el('div', { class: 'table-wrap' }, el('table', { class: 'list', ...attrs },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map((r) => {
      const cells = Array.isArray(r) ? r : r.cells;
      return el('tr', Array.isArray(r) ? {} : r.attrs, cells.map((c) => el('td', {}, c instanceof Node ? c : text(c))));
    }))));
}

// ------------------------------------------------------------------ messages
const errors = [];

/** Show a message (kind: info, ok, error): an error stays until dismissed (×), others for a few
 * seconds. */
export function toast(message, kind = 'info', seconds = kind === 'error' ? 0 : 6) {
  const box = $('#toasts');
  const t = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    el('span', {}, message),
    el('button', { class: 'close', 'aria-label': tr('关闭', 'Dismiss'), onclick: () => t.remove() }, '×'));
  box.append(t);
  if (seconds > 0) setTimeout(() => t.remove(), seconds * 1000);
  return t;
}

/** An error for the user: the API's description when there is one; never swallowed. */
export function showError(err, what) {
  const message = err && (err.description || err.message) ? (err.description || err.message) : String(err);
  errors.push({ what: what || null, message, status: err && err.status });
  toast(what ? `${what}: ${message}` : message, 'error');
}

/** Errors shown to the user so far (for tests). */
export function shownErrors() {
  return errors.slice();
}

/** Run an async action; errors go to the user with `what` as context. */
export async function guard(what, fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err, what);
    return undefined;
  }
}

// ------------------------------------------------------------------ the details panel
// A panel that can draw itself again (`redraw`) follows the 中/EN switch at once: on a change of
// language the panel is drawn anew from what it showed, keeping the scroll position and what
// was typed or chosen in its fields (matched by name, id or data-field; a chosen file moves over).
const panelState = { owner: null, redraw: null };

/** Put content into the details panel under a title; `owner` names the tool that filled it and
 * `redraw()`, when given, draws the same panel again (in the language then in use). */
export function showPanel(title, content, owner = null, redraw = null) {
  panelState.owner = owner;
  panelState.redraw = redraw;
  const body = $('#panel-body');
  $('#panel-title').textContent = title;
  body.replaceChildren(...(Array.isArray(content) ? content : [content]).filter(Boolean));
  body.scrollTop = 0;
  document.body.classList.add('panel-open');
  $('#panel').dataset.owner = owner || '';
  return body;
}

/** Whether the panel on screen is still the one `redraw` draws (async work finishing late). */
export function panelShows(redraw) {
  return Boolean(redraw) && panelState.redraw === redraw;
}

const FIELDS = 'input, select, textarea';
const fieldKey = (e) => e.name || e.id || e.dataset.field || '';

function redrawPanel() {
  const body = $('#panel-body');
  const scroller = $('#panel'); // the panel scrolls, not its body (viewer.css .panel: overflow auto)
  const top = scroller.scrollTop;
  const before = new Map($$(FIELDS, body).filter(fieldKey).map((e) => [fieldKey(e), e]));
  const open = document.body.classList.contains('panel-open'); // a closed panel stays closed
  panelState.redraw();
  document.body.classList.toggle('panel-open', open);
  for (const e of $$(FIELDS, $('#panel-body')).filter(fieldKey)) {
    const old = before.get(fieldKey(e));
    if (!old || old === e) continue;
    if (old.type === 'file') {
      if (old.files && old.files.length) e.replaceWith(old); // a chosen file cannot be set: keep the input
    } else if (old.type === 'checkbox' || old.type === 'radio') {
      e.checked = old.checked;
    } else if (old.value !== e.value && (old.tagName !== 'SELECT' || [...e.options].some((o) => o.value === old.value))) {
      e.value = old.value;
    }
  }
  scroller.scrollTop = top;
}

// The panel follows the language switch: drawn again, or the empty panel's hint.
onLang(() => {
  if (!$('#panel-body')) return;
  if (panelState.redraw) redrawPanel();
  else if (!panelState.owner) clearPanel();
});

export function panelOwner() {
  return panelState.owner;
}

export function clearPanel() {
  panelState.owner = null;
  panelState.redraw = null;
  $('#panel-title').textContent = tr('详情', 'Details');
  $('#panel-body').replaceChildren(el('p', { class: 'muted' },
    tr('点击管线或管点查看属性，或在上方选择工具。', 'Click a pipe or a point to see its attributes, or pick a tool above.')));
  $('#panel').dataset.owner = '';
}

/** A panel section: a heading and its content. */
export function section(title, ...content) {
  return el('section', { class: 'block' }, el('h3', {}, title), ...content);
}

/** A busy line that is replaced when the work is done. */
export function busy(message) {
  return el('p', { class: 'busy' }, el('span', { class: 'spinner', 'aria-hidden': 'true' }), message);
}

/** Tool hint line at the bottom of the map. */
export function hint(message) {
  const h = $('#hint');
  h.textContent = message || '';
  h.hidden = !message;
}

/** An SVG drawing from the server, in a scrollable frame, with a button to open it large. */
export function drawing(svgText, title) {
  const frame = el('div', { class: 'drawing' });
  // The SVG comes from our own server; parsing it as a document keeps any script out of the page.
  const doc = new DOMParser().parseFromString(svgText, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.nodeName.toLowerCase() !== 'svg' || doc.querySelector('parsererror')) {
    frame.append(el('p', { class: 'error' }, tr('无法读取该图。', 'The drawing could not be read.')));
    return frame;
  }
  svg.querySelectorAll('script').forEach((s) => s.remove());
  svg.removeAttribute('height');
  svg.setAttribute('width', '100%');
  frame.append(document.importNode(svg, true));
  const open = el('button', {
    class: 'small', onclick: () => openDocument(svgText, 'image/svg+xml', title),
  }, tr('全尺寸打开', 'Open full size'));
  return el('div', {}, frame, open);
}

/** Open a document (HTML report, SVG) in a new tab from text we fetched with the token. */
export function openDocument(textBody, type, title) {
  const url = URL.createObjectURL(new Blob([textBody], { type: `${type};charset=utf-8` }));
  const w = window.open(url, '_blank');
  if (w) w.opener = null;
  else toast(tr(`${title || '文档'}已就绪：请允许弹出窗口以打开`, `${title || 'The document'} is ready: allow pop-ups to open it`), 'info');
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return url;
}
