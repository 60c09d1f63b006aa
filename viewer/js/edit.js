// Editing in the viewer (数据编辑) for users with the `edit` permission: add a pipe (two clicks,
// each end snapped to a node or a new point) or a point, move a point (drag it, or click it and
// then its new place), split a pipe at a click, merge two pipes that meet at a point, change
// attributes in a form made from the column catalogue (GET /view/edit-form/{kind}), retire and
// delete. Every change goes through the edit API (api/edit.py: versioned, audited); the tiles
// follow by the server's incremental refresh.
//
// A version conflict (409: someone changed the feature since it was read) is explained with who
// and when from the feature's history, and offers to reload and retry. 撤销 Undo takes back your
// last edit by its inverse edit through the same API (delete what was added, move back, merge
// what was split, split what was merged, set the old values, add back what was retired or
// deleted), naming the versions it expects so that it cannot undo over someone else's change.

/* global Cesium */

import { ApiError, enc, getJSON, postJSON, request } from './api.js';
import { tr } from './i18n.js';
import { busy, clearPanel, el, num, panelOwner, showPanel, toast, when } from './ui.js';
import { toTwin } from './geo.js';
import { world } from './scene.js';
import { clearMarks, highlightPipe, overlay, register, setMarks } from './tools.js';
import { invalidate, pipeAt, SnapMarks, snapAt } from './snap.js';

const KINDS = { node: 'nodes', pipe: 'segments' };
const MODES = {
  select: { zh: '选择要素：点击管线或管点。', en: 'Select: click a pipe or a point.' },
  pipe: { zh: '加管线：点击起点，再点击终点（捕捉到已有管点，或新建管点）。Esc 取消。',
    en: 'Add a pipe: click its start, then its end (snapped to a point, or a new point). Esc cancels.' },
  point: { zh: '加管点：点击位置。', en: 'Add a point: click where it is.' },
  move: { zh: '移动管点：拖动它，或点击新位置。Esc 取消。', en: 'Move the point: drag it, or click its new place. Esc cancels.' },
  split: { zh: '截断：点击管线上截断的位置。Esc 取消。', en: 'Split: click the place on the pipe. Esc cancels.' },
  merge: { zh: '合并：点击与之相接的另一条管线。Esc 取消。', en: 'Merge: click the other pipe meeting it. Esc cancels.' },
};

const state = {
  mode: 'select', target: null, start: null, undo: [], forms: {}, layer: null, marks: null, handler: null,
  last: null, error: null, conflict: null, dragging: false, dragEnded: 0, ui: null, moving: false,
  view: null, said: null,
};

// ------------------------------------------------------------------ small helpers
function layer() {
  if (!state.layer) state.layer = overlay('edit');
  if (!state.marks) state.marks = new SnapMarks(state.layer);
  return state.layer;
}

async function form(kind) {
  if (!state.forms[kind]) state.forms[kind] = await getJSON(`/view/edit-form/${kind}`);
  return state.forms[kind];
}

async function patchJSON(path, json) {
  return (await request(path, { method: 'PATCH', json })).json();
}

async function deleteJSON(path, query) {
  return (await request(path, { method: 'DELETE', query })).json();
}

/** The versions this session's edits (and undos) left each feature at ("segment:id" -> n): an
 * undo names the one its feature should be at, so a change by someone else since is a 409. */
const known = new Map();

function remember(answer) {
  for (const f of (answer && answer.features) || []) known.set(`${f.kind}:${f.id}`, f.version);
}

/** The version this session last left a feature at (kind: 'node', 'segment'). */
function ver(kind, id) {
  return known.get(`${kind}:${id}`);
}

function valueOf(field, props) {
  for (const c of field.columns) if (props[c] !== undefined && props[c] !== null) return props[c];
  return null;
}

function kindLabel(kind) {
  return kind === 'segments' ? tr('管线', 'pipe') : tr('管点', 'point');
}

// ------------------------------------------------------------------ the form
function fieldLabel(f) {
  return `${tr(f.label_zh, f.label_en) || f.name}${f.unit ? ` (${f.unit})` : ''}${f.required ? ' *' : ''}`;
}

/** The id of a page-wide datalist of an open code list's known codes, in the current language. */
function codeList(f) {
  const id = `codes-${f.name}`;
  document.getElementById(id)?.remove();
  document.body.append(el('datalist', { id },
    f.suggestions.map((o) => el('option', { value: String(o.value), label: `${tr(o.zh, o.en)} ${o.value}` }))));
  return id;
}

function input(f, value, utility) {
  const id = `edit-${f.name}-${Math.random().toString(36).slice(2, 7)}`;
  const shown = value === null || value === undefined ? '' : String(value);
  let node;
  if (f.options || f.type === 'boolean') {
    const options = f.type === 'boolean'
      ? [{ value: 'true', zh: '是', en: 'yes' }, { value: 'false', zh: '否', en: 'no' }]
      : f.options.filter((o) => !o.parent || !utility || o.parent === utility);
    node = el('select', { id, name: f.name },
      el('option', { value: '' }, f.required ? tr('请选择', 'choose') : '–'),
      options.map((o) => el('option', { value: String(o.value), selected: String(o.value) === shown },
        tr(o.zh, o.en) && tr(o.zh, o.en) !== String(o.value) ? `${tr(o.zh, o.en)} ${o.value}` : String(o.value))));
    if (shown && !options.some((o) => String(o.value) === shown)) node.append(el('option', { value: shown, selected: true }, shown));
  } else {
    node = el('input', { id, name: f.name, value: shown, maxlength: 500, autocomplete: 'off',
      inputmode: f.type === 'number' ? 'decimal' : f.type === 'integer' ? 'numeric' : undefined });
    if (f.suggestions) node.setAttribute('list', codeList(f)); // burial: known codes offered, others kept
  }
  node.required = Boolean(f.required);
  node.dataset.original = shown;
  node.title = f.description || '';
  return { id, node };
}

/** A form of `fields` with `values` (name -> value): {node, read()}; read() gives
 * {values: name -> typed value, changed: names edited, errors}. */
function fieldsForm(fields, values, { utility = null, role = 'edit-form' } = {}) {
  const rows = [];
  const inputs = [];
  for (const f of fields) {
    const { id, node } = input(f, values[f.name], utility);
    const message = el('div', { class: 'error small', 'data-role': 'field-error', hidden: true });
    inputs.push({ f, node, message });
    rows.push(el('tr', { dataset: { field: f.name } }, el('th', { scope: 'row' }, el('label', { for: id }, fieldLabel(f))),
      el('td', {}, node, message)));
  }
  const table = el('table', { class: 'attrs', 'data-role': role }, el('tbody', {}, rows));
  const read = () => {
    const out = { values: {}, changed: [], errors: [] };
    for (const { f, node, message } of inputs) {
      const raw = node.value.trim();
      let v = raw === '' ? null : raw;
      let problem = null;
      if (v === null && f.required) problem = tr('必填', 'required');
      else if (v !== null && (f.type === 'number' || f.type === 'integer')) {
        v = Number(raw);
        if (!Number.isFinite(v)) problem = tr('须为数字', 'must be a number');
        else if (f.type === 'integer' && !Number.isInteger(v)) problem = tr('须为整数', 'must be a whole number');
      } else if (v !== null && f.type === 'boolean') v = raw === 'true';
      message.textContent = problem || '';
      message.hidden = !problem;
      node.setAttribute('aria-invalid', String(Boolean(problem)));
      if (problem) out.errors.push(`${tr(f.label_zh, f.label_en)}: ${problem}`);
      out.values[f.name] = v;
      if (raw !== node.dataset.original) out.changed.push(f.name);
    }
    return out;
  };
  return { node: table, read, inputs };
}

function formError() {
  return el('p', { class: 'error', role: 'alert', 'data-role': 'form-error', hidden: true });
}

function say(box, message) {
  box.replaceChildren(...(Array.isArray(message) ? message : [message]).filter(Boolean));
  box.hidden = !message;
  if (message && box.scrollIntoView) box.scrollIntoView({ block: 'nearest' });
}

// ------------------------------------------------------------------ the panel
function render(content = null) {
  const modeButton = (mode, zh, en) => el('button', { type: 'button', 'data-mode': mode, 'aria-pressed': String(state.mode === mode),
    onclick: () => setMode(mode) }, tr(zh, en));
  const top = state.undo[state.undo.length - 1];
  const undo = el('button', { type: 'button', 'data-role': 'undo', disabled: !top || undefined,
    title: top ? tr(...top.label) : tr('没有可撤销的修改', 'nothing to undo'), onclick: () => undoLast() },
  top ? `${tr('撤销', 'Undo')}: ${tr(...top.label)}` : tr('撤销', 'Undo'));
  const said = state.said || [MODES[state.mode].zh, MODES[state.mode].en];
  const status = el('p', { class: 'muted', 'data-role': 'edit-status' }, tr(...said));
  const body = el('div', { 'data-role': 'edit-body' }, content);
  state.ui = { status, body };
  state.view = null;
  showPanel(tr('数据编辑', 'Edit'), [
    el('div', { class: 'actions', role: 'group', 'aria-label': tr('编辑方式', 'Edit mode') },
      modeButton('select', '选择', 'Select'), modeButton('pipe', '加管线', 'Add pipe'), modeButton('point', '加管点', 'Add point'), undo),
    status, body,
  ], 'edit', redraw);
}

/** The panel drawn again on the language switch: the header, and the body when it is a form that
 * draws itself (`state.view`; showPanel's redraw keeps what was typed). A message on screen (an
 * error, a conflict, a question) keeps the body as it is, so nothing said is lost. */
function redraw() {
  const draw = state.view;
  const body = state.ui ? state.ui.body : null;
  const speaking = body && body.querySelector('[data-role=form-error]:not([hidden]), [data-role=conflict]:not([hidden]), [data-role=edit-ask] > *');
  if (draw && !speaking) {
    const open = Array.from(body.querySelectorAll('details'), (d) => d.open);
    render();
    view(draw);
    state.ui.body.querySelectorAll('details').forEach((d, i) => { if (open[i]) d.open = true; });
  } else {
    render(body ? Array.from(body.childNodes) : null);
    state.view = draw;
  }
}

/** The status line under the mode buttons (follows the language switch). */
function sayStatus(zh, en) {
  state.said = [zh, en];
  if (state.ui) say(state.ui.status, tr(zh, en));
}

function setBody(...content) {
  if (panelOwner() !== 'edit' || !state.ui) render();
  state.view = null;
  state.ui.body.replaceChildren(...content.filter(Boolean));
}

/** Draw a body that can draw itself again (`draw()` calls setBody): the language switch redraws it. */
function view(draw) {
  const out = draw();
  state.view = draw;
  return out;
}

/** Switch the drawing mode; the drawing in progress is dropped. */
export function setMode(mode, keepBody = false) {
  state.mode = MODES[mode] ? mode : 'select';
  state.start = null;
  state.said = null;
  if (state.marks) state.marks.clear();
  const body = keepBody && state.ui ? Array.from(state.ui.body.childNodes) : null;
  const draw = keepBody ? state.view : null;
  render(body);
  state.view = draw;
  if (!['move', 'split', 'merge'].includes(state.mode) && !keepBody) state.target = null;
}

// ------------------------------------------------------------------ selecting and the attribute form
/** Select a feature (kind 'nodes' or 'segments') for editing: its record and attribute form. */
export async function select(kind, id) {
  state.mode = 'select';
  state.said = null;
  render(busy(tr('正在读取…', 'Reading…')));
  try {
    const [doc, spec] = await Promise.all([getJSON(`/features/${kind}/${enc(id)}`), form(kind)]);
    state.target = { kind, id, doc };
    setMarks([[id, '#ffd60a']], false);
    view(() => showTarget(spec));
  } catch (err) {
    setBody(el('p', { class: 'error', role: 'alert' }, err.description || err.message));
  }
  return state.target;
}

function showTarget(spec, carried = null) {
  const { kind, id, doc } = state.target;
  const props = doc.properties;
  const values = Object.fromEntries(spec.fields.map((f) => [f.name, valueOf(f, props)]));
  if (carried) Object.assign(values, carried);
  const utility = props.utility;
  const fields = fieldsForm(spec.fields, values, { utility });
  if (carried) for (const { f, node } of fields.inputs) if (f.name in carried) node.dataset.original = String(valueOf(f, props) ?? '');
  const error = formError();
  const conflict = el('div', { 'data-role': 'conflict', hidden: true });
  const save = el('button', { type: 'submit', class: 'primary', 'data-role': 'save' }, tr('保存', 'Save'));
  const f = el('form', { 'data-role': 'attribute-form', novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    saveAttributes(fields, error, conflict);
  } }, conflict, fields.node, error, el('div', { class: 'actions' }, save));
  const actions = el('div', { class: 'actions', 'data-role': 'edit-actions' },
    kind === 'nodes' ? el('button', { type: 'button', 'data-action': 'move', onclick: () => setMode('move', true) }, tr('移动', 'Move')) : null,
    kind === 'segments' ? el('button', { type: 'button', 'data-action': 'split', onclick: () => setMode('split', true) }, tr('截断', 'Split')) : null,
    kind === 'segments' ? el('button', { type: 'button', 'data-action': 'merge', onclick: () => setMode('merge', true) }, tr('合并', 'Merge')) : null,
    el('button', { type: 'button', 'data-action': 'retire', onclick: () => askRetire(error) }, tr('废弃', 'Retire')),
    el('button', { type: 'button', 'data-action': 'delete', class: 'danger', onclick: () => askDelete(error) }, tr('删除', 'Delete')));
  setBody(
    el('p', { class: 'feature-head', 'data-role': 'edit-target' }, el('strong', {}, `${kindLabel(kind)} ${id}`),
      ` · ${tr('版本', 'version')} `, el('span', { 'data-role': 'edit-version' }, String(props.version)),
      props.retired_at ? ` · ${tr('已废弃', 'retired')}` : ''),
    actions, el('div', { 'data-role': 'edit-ask' }), f);
}

async function saveAttributes(fields, error, conflict) {
  const { kind, id, doc } = state.target;
  const read = fields.read();
  say(error, null);
  if (read.errors.length) {
    say(error, read.errors.join('；'));
    return;
  }
  if (!read.changed.length) {
    say(error, tr('没有修改', 'Nothing changed'));
    return;
  }
  const attributes = Object.fromEntries(read.changed.map((n) => [n, read.values[n]]));
  const before = Object.fromEntries(read.changed.map((n) => {
    const f = fields.inputs.find((x) => x.f.name === n).f;
    const old = valueOf(f, doc.properties);
    return [n, n === 'subtype' && old === null ? doc.properties.utility : old]; // a subtype is cleared by its parent
  }));
  const version = doc.properties.version;
  await run(words(`修改 ${id}`, `change ${id}`), () => patchJSON(`/edit/${kind}/${enc(id)}`, { attributes, version }), {
    error, conflict, kind, id, version, retry: (latest) => view(() => showTarget(state.forms[kind], attributes)),
    undo: () => () => patchJSON(`/edit/${kind}/${enc(id)}`, { attributes: before, version: ver(kind.slice(0, -1), id) }),
  });
}

// ------------------------------------------------------------------ running an edit
/** An edit's name in both languages (`[zh, en]`): the undo button follows the language switch. */
const words = (zh, en) => [zh, en];

/** Run an edit (`label`: words(zh, en)): on success keep its undo, refresh the selection; a 409
 * is explained. */
async function run(label, work, { error = null, conflict = null, kind = null, id = null, version = null, retry = null, undo = null, after = null } = {}) {
  state.error = null;
  try {
    const answer = await work();
    state.last = answer;
    remember(answer);
    invalidate();
    if (undo) state.undo.push({ label, run: undo(answer) });
    const warnings = (answer.warnings || []).map((w) => w.message).filter(Boolean);
    toast(`${tr('已保存', 'Saved')}: ${tr(...label)}${warnings.length ? ` · ${tr('提示', 'warnings')}: ${warnings.join('; ')}` : ''}`, 'ok');
    if (after) await after(answer);
    else await reselect();
    return answer;
  } catch (err) {
    state.error = err;
    if (!(err instanceof ApiError)) throw err;
    if (id) highlightPipe(id); // the refused feature stands out in the 3D view
    if (err.status === 409 && kind && id) {
      await explainConflict(err, { kind, id, version, box: conflict || error, retry: retry || (() => select(kind, id)) });
    }
    else if (error) say(error, err.description);
    else showProblem(err);
    return null;
  }
}

function showProblem(err) {
  const box = state.ui && state.ui.body.querySelector('[data-role=form-error]');
  if (box) say(box, err.description || err.message);
  else setBody(el('p', { class: 'error', role: 'alert', 'data-role': 'form-error' }, err.description || err.message));
}

async function reselect() {
  const t = state.target;
  if (!t) {
    setMode(state.mode === 'select' ? 'select' : state.mode, false);
    return;
  }
  try {
    await select(t.kind, t.id);
  } catch {
    state.target = null;
    render();
  }
}

/** A 409 for people: who changed the feature and when, from its history; reload and retry. */
async function explainConflict(err, { kind, id, version, box, retry }) {
  let latest = null;
  try {
    const h = await getJSON(`/features/${kind}/${enc(id)}/history`);
    latest = h.versions[h.versions.length - 1];
  } catch {
    // the history itself is gone (deleted): the server's message stays
  }
  const target = box || state.ui.body;
  if (!latest || version === null || version === undefined || latest.version === version) {
    say(target, el('p', { class: 'error', role: 'alert' }, err.description)); // not a version conflict
    target.hidden = false;
    return;
  }
  const by = latest && latest.batch ? latest.batch.by : null;
  const at = latest ? when(latest.valid_from) : null;
  const m = latest ? latest.version : '?';
  state.conflict = { kind, id, from: version, to: latest ? latest.version : null, by, at: latest ? latest.valid_from : null };
  const message = tr(`此要素已被他人修改（版本 ${version ?? '?'} → ${m}）：${by || '未知'}，${at || ''}`,
    `changed by someone else (version ${version ?? '?'} → ${m}): ${by || 'unknown'}, ${at || ''}`);
  say(target, [el('p', { class: 'error', role: 'alert', 'data-role': 'conflict-message' }, message),
    el('p', { class: 'muted small' }, err.description),
    retry ? el('button', { type: 'button', 'data-role': 'reload-retry', onclick: async () => {
      const doc = await getJSON(`/features/${kind}/${enc(id)}`);
      state.target = { kind, id, doc };
      retry(doc);
    } }, tr('重新载入并重试', 'Reload and retry')) : null]);
  target.hidden = false;
  target.scrollIntoView({ block: 'nearest' });
}

// ------------------------------------------------------------------ undo
/** Undo the last edit of this session by its inverse edit. */
export async function undoLast() {
  const top = state.undo[state.undo.length - 1];
  if (!top) return null;
  state.error = null;
  try {
    const answer = await top.run();
    state.undo.pop();
    state.last = answer;
    remember(answer);
    invalidate();
    toast(`${tr('已撤销', 'Undone')}: ${tr(...top.label)}`, 'ok');
    const t = state.target;
    const gone = t && (answer.features || []).some((f) => `${f.kind}s` === t.kind && f.id === t.id && ['deleted', 'retired'].includes(f.change));
    if (gone) {
      state.target = null;
      clearMarks();
      setMode('select');
    } else await reselect();
    return answer;
  } catch (err) {
    state.error = err;
    if (!(err instanceof ApiError)) throw err;
    const conflict = err.status === 409;
    setBody(el('p', { class: 'error', role: 'alert', 'data-role': 'form-error' },
      conflict ? `${tr('无法撤销：要素已被他人修改', 'Cannot undo: changed by someone else')} (${err.description})`
        : `${tr('无法撤销', 'Cannot undo')}: ${err.description}`));
    return null;
  }
}

/** A retired or deleted feature added back as it was (an add with its old id revives it). */
function addBack(kind, doc, spec) {
  const p = doc.properties;
  const coords = doc.geometry ? doc.geometry.coordinates : null;
  const skip = new Set(['subtype', 'size', 'from_depth_m', 'to_depth_m']);
  const attributes = {};
  for (const f of spec.fields) {
    const v = valueOf(f, p);
    if (!skip.has(f.name) && v !== null) attributes[f.name] = v;
  }
  const code = p.subtype || p.utility;
  if (kind === 'nodes') {
    return postJSON('/edit/nodes', { id: doc.id, utility: code, ground_z: p.ground_z, depth_m: p.depth_m ?? undefined,
      lon: coords[0], lat: coords[1], attributes, scope: p.scope || undefined });
  }
  return postJSON('/edit/segments', { id: doc.id, from_node: p.from_node, to_node: p.to_node, utility: code,
    size: p.size_text || valueOf(spec.fields.find((f) => f.name === 'size'), p), from_depth_m: p.from_depth_m ?? undefined,
    to_depth_m: p.to_depth_m ?? undefined, attributes, scope: p.scope || undefined });
}

// ------------------------------------------------------------------ retire and delete
function askRetire(error) {
  const { kind, id, doc } = state.target;
  const reason = el('input', { 'data-role': 'retire-reason', maxlength: 500, placeholder: tr('废弃原因', 'reason'),
    'aria-label': tr('废弃原因', 'reason') });
  const ask = state.ui.body.querySelector('[data-role=edit-ask]');
  ask.replaceChildren(el('div', { class: 'inline-form' }, reason, el('button', { type: 'button', 'data-role': 'confirm-retire',
    onclick: async () => {
      if (!reason.value.trim()) {
        say(error, tr('请填写废弃原因', 'Give a reason'));
        return;
      }
      const spec = await form(kind);
      await run(words(`废弃 ${id}`, `retire ${id}`), () => postJSON(`/edit/${kind}/${enc(id)}/retire`,
        { reason: reason.value.trim(), version: doc.properties.version }),
      { error, kind, id, version: doc.properties.version, undo: () => () => addBack(kind, doc, spec) });
    } }, tr('确认废弃', 'Retire'))));
  reason.focus();
}

function askDelete(error) {
  const { kind, id, doc } = state.target;
  const ask = state.ui.body.querySelector('[data-role=edit-ask]');
  ask.replaceChildren(el('p', { class: 'error', role: 'alert' },
    tr(`确定删除${kindLabel(kind)} ${id}？删除后只在历史中保留。`, `Delete ${kindLabel(kind)} ${id} for good? Only its history stays.`)),
  el('div', { class: 'actions' },
    el('button', { type: 'button', class: 'danger', 'data-role': 'confirm-delete', onclick: async () => {
      const spec = await form(kind);
      const version = doc.properties.version;
      await run(words(`删除 ${id}`, `delete ${id}`), () => deleteJSON(`/edit/${kind}/${enc(id)}`, { version }), {
        error, kind, id, version, undo: () => () => addBack(kind, doc, spec),
        after: async () => { state.target = null; clearMarks(); setMode('select'); },
      });
    } }, tr('确认删除', 'Delete')),
    el('button', { type: 'button', onclick: () => ask.replaceChildren() }, tr('取消', 'Cancel'))));
}

// ------------------------------------------------------------------ move, split, merge
async function twinXY(kind, id) {
  const f = await getJSON(`/features/${kind}/${enc(id)}`, { crs: 'twin' });
  return f.geometry.coordinates;
}

async function moveTo(at) {
  const { id, doc } = state.target;
  const version = doc.properties.version;
  const [e, n] = await twinXY('nodes', id);
  await run(words(`移动 ${id}`, `move ${id}`), () => postJSON(`/edit/nodes/${enc(id)}/move`, { lon: at.lon, lat: at.lat, version }), {
    kind: 'nodes', id, version,
    undo: () => () => postJSON(`/edit/nodes/${enc(id)}/move`, { easting: e, northing: n, version: ver('node', id) }),
  });
}

async function splitAt(at) {
  const { id, doc } = state.target;
  const version = doc.properties.version;
  await run(words(`截断 ${id}`, `split ${id}`), () => postJSON(`/edit/segments/${enc(id)}/split`, { at: { lon: at.lon, lat: at.lat }, version }), {
    kind: 'segments', id, version,
    undo: (answer) => () => postJSON('/edit/segments/merge', { segments: answer.segments, id,
      versions: answer.segments.map((s) => ver('segment', s)) }),
    after: async (answer) => { await select('segments', answer.segments[0]); },
  });
}

async function mergeWith(other) {
  const { id, doc } = state.target;
  const b = await getJSON(`/features/segments/${enc(other)}`);
  const ends = (p) => [p.from_node, p.to_node];
  const shared = ends(doc.properties).filter((x) => ends(b.properties).includes(x));
  if (shared.length !== 1) {
    showProblem({ message: tr(`${id} 与 ${other} 不相接于一个管点`, `${id} and ${other} do not meet at one point`) });
    return;
  }
  const node = shared[0];
  const [e, n] = await twinXY('nodes', node);
  const versions = [doc.properties.version, b.properties.version];
  await run(words(`合并 ${id}、${other}`, `merge ${id}, ${other}`), () => postJSON('/edit/segments/merge', { segments: [id, other], versions }), {
    kind: 'segments', id, version: doc.properties.version,
    undo: (answer) => async () => {
      const merged = await getJSON(`/features/segments/${enc(answer.segment)}`);
      const first = ends(doc.properties).includes(merged.properties.from_node) ? id : other;
      return postJSON(`/edit/segments/${enc(answer.segment)}/split`, { at: { easting: e, northing: n }, node_id: node,
        ids: [first, first === id ? other : id], version: ver('segment', answer.segment) });
    },
    after: async (answer) => { await select('segments', answer.segment); },
  });
}

// ------------------------------------------------------------------ adding
function newId(prefix) {
  return `${prefix}-E${Date.now().toString(36).slice(-5).toUpperCase()}`;
}

async function groundZ(at) {
  const t = await toTwin([[at.lon, at.lat, at.h]], true);
  return t.ground_z[0];
}

/** An end of a new pipe: the point it snapped to, or a new point (in `language`, else the one in use). */
function endText(at, language = null) {
  const say = (zh, en) => (language ? (language === 'en' ? en : zh) : tr(zh, en));
  return at.snap && at.snap.kind === 'node' ? `${say('管点', 'point')} ${at.snap.id}` : say('新管点', 'new point');
}

function nodeFields(spec, prefix) {
  return spec.add.filter((f) => f.name !== 'utility').map((f) => ({ ...f, name: `${prefix}${f.name}` }));
}

/** The form of a new pipe between two snapped places (`a`, `b`: snapAt results). */
async function pipeForm(a, b) {
  const [seg, node] = await Promise.all([form('segments'), form('nodes')]);
  const isNode = (at) => at.snap && at.snap.kind === 'node';
  const utility = (isNode(a) && a.snap.utility) || (isNode(b) && b.snap.utility) || null;
  const base = newId(utility || 'P');
  const grounds = {};
  for (const [at, key] of [[a, 'a_'], [b, 'b_']]) if (!isNode(at)) grounds[key] = await groundZ(at).catch(() => null);
  return view(() => drawPipeForm(a, b, { seg, node, utility, base, grounds }));
}

/** The new pipe's form (drawn again on the language switch). */
function drawPipeForm(a, b, { seg, node, utility, base, grounds }) {
  const isNode = (at) => at.snap && at.snap.kind === 'node';
  const more = seg.fields.filter((f) => !seg.add.some((x) => x.name === f.name) && f.name !== 'subtype');
  const mainFields = seg.add.map((f) => (f.name === 'utility' && !(isNode(a) && isNode(b)) ? { ...f, required: true } : f));
  const values = { utility, status: 'active' };
  const main = fieldsForm(mainFields, values, { role: 'pipe-form' });
  const extra = fieldsForm(more, values, { utility, role: 'pipe-more' });
  const ends = [];
  for (const [at, key, zh, en] of [[a, 'a_', '起点', 'start'], [b, 'b_', '终点', 'end']]) {
    if (isNode(at)) continue;
    const g = grounds[key];
    const f = fieldsForm(nodeFields(node, key), { [`${key}id`]: `${base}${key === 'a_' ? 'A' : 'B'}`, [`${key}ground_z`]: g === null ? null : g.toFixed(3) },
      { role: `new-node-${key.slice(0, 1)}` });
    ends.push({ at, key, f, title: tr(`新${zh}管点`, `New ${en} point`) });
  }
  const error = formError();
  const submit = el('button', { type: 'submit', class: 'primary', 'data-role': 'save' }, tr('添加管线', 'Add the pipe'));
  const f = el('form', { 'data-role': 'add-pipe-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); addPipe(a, b, main, extra, ends, error); } },
    el('p', { 'data-role': 'pipe-ends' }, `${tr('起点', 'Start')}: ${endText(a)} → ${tr('终点', 'end')}: ${endText(b)}`),
    main.node, ends.map((x) => [el('h3', {}, x.title), x.f.node]),
    el('details', {}, el('summary', {}, tr('更多属性', 'More attributes')), extra.node),
    error, el('div', { class: 'actions' }, submit,
      el('button', { type: 'button', onclick: () => setMode('pipe') }, tr('取消', 'Cancel'))));
  setBody(f);
  return f;
}

function compact(values) {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== null && v !== undefined && v !== ''));
}

async function addPipe(a, b, main, extra, ends, error) {
  const reads = [main.read(), extra.read(), ...ends.map((x) => x.f.read())];
  const problems = reads.flatMap((r) => r.errors);
  if (problems.length) {
    say(error, problems.join('；'));
    return;
  }
  const seg = compact(reads[0].values);
  const attributes = compact(reads[1].values);
  const made = [];
  const nodeOf = {};
  const label = words('添加管线', 'add a pipe');
  await run(label, async () => {
    try {
      for (const [i, x] of ends.entries()) {
        const v = compact(reads[2 + i].values);
        const id = v[`${x.key}id`];
        remember(await postJSON('/edit/nodes', compact({ id, utility: seg.utility, ground_z: v[`${x.key}ground_z`],
          depth_m: v[`${x.key}depth_m`], lon: x.at.lon, lat: x.at.lat })));
        made.push(id);
        nodeOf[x.key] = id;
      }
      const from = nodeOf.a_ || a.snap.id;
      const to = nodeOf.b_ || b.snap.id;
      return await postJSON('/edit/segments', { ...seg, from_node: from, to_node: to,
        attributes: Object.keys(attributes).length ? attributes : undefined });
    } catch (err) {
      for (const id of made.reverse()) await deleteJSON(`/edit/nodes/${enc(id)}`).catch(() => null); // all or nothing
      throw err;
    }
  }, {
    error,
    undo: (answer) => async () => {
      const segId = answer.features.find((x) => x.kind === 'segment').id;
      const answers = [await deleteJSON(`/edit/segments/${enc(segId)}`, { version: ver('segment', segId) })];
      for (const id of made) answers.push(await deleteJSON(`/edit/nodes/${enc(id)}`, { version: ver('node', id) }));
      return { ...answers[answers.length - 1], features: answers.flatMap((x) => x.features || []) };
    },
    after: async (answer) => {
      state.start = null;
      if (state.marks) state.marks.clear();
      const segId = answer.features.find((x) => x.kind === 'segment').id;
      await select('segments', segId);
    },
  });
}

async function pointForm(at) {
  const spec = await form('nodes');
  const utility = at.snap ? at.snap.utility : null;
  const g = await groundZ(at).catch(() => null);
  const id = newId(utility || 'P');
  return view(() => drawPointForm(at, spec, { id, utility, g }));
}

/** The new point's form (drawn again on the language switch). */
function drawPointForm(at, spec, { id, utility, g }) {
  const main = fieldsForm(spec.add, { id, utility, ground_z: g === null ? null : g.toFixed(3) }, { role: 'point-form' });
  const extra = fieldsForm(spec.fields.filter((f) => f.name !== 'subtype'), {}, { role: 'point-more' });
  const error = formError();
  setBody(el('form', { 'data-role': 'add-point-form', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const r = [main.read(), extra.read()];
    if (r[0].errors.length || r[1].errors.length) {
      say(error, [...r[0].errors, ...r[1].errors].join('；'));
      return;
    }
    const v = compact(r[0].values);
    const attributes = compact(r[1].values);
    await run(words(`添加管点 ${v.id}`, `add point ${v.id}`), () => postJSON('/edit/nodes', { ...v, lon: at.lon, lat: at.lat,
      attributes: Object.keys(attributes).length ? attributes : undefined }), {
      error,
      undo: () => () => deleteJSON(`/edit/nodes/${enc(v.id)}`, { version: ver('node', v.id) }),
      after: async () => { if (state.marks) state.marks.clear(); await select('nodes', v.id); },
    });
  } }, el('p', {}, `${tr('位置', 'Place')}: ${num(at.lon, 7)}, ${num(at.lat, 7)}`), main.node,
  el('details', {}, el('summary', {}, tr('更多属性', 'More attributes')), extra.node), error,
  el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', 'data-role': 'save' }, tr('添加管点', 'Add the point')))));
}

// ------------------------------------------------------------------ the map: clicks, cursor, drag
async function onClick(pick) {
  if (Date.now() - state.dragEnded < 400) return; // the click that ends a drag
  const mode = state.mode;
  if (mode === 'select') {
    if (pick.props && pick.props.id !== undefined) {
      await select(KINDS[pick.kind], String(pick.props.id));
      return;
    }
    const at = await snapAt(pick.screen);
    if (at && at.snap && at.snap.kind === 'node') await select('nodes', at.snap.id);
    else toast(tr('此处无管线或管点', 'No pipe or point here'), 'info', 3);
    return;
  }
  if (mode === 'merge') {
    // The live pipes (features API) first: the tiles may still show the pipes before an edit.
    const hit = await pipeAt(pick.screen, { skip: (p) => p.id === state.target.id });
    const other = hit ? hit.id : pick.kind === 'pipe' && pick.props ? String(pick.props.id) : null;
    if (!other || other === state.target.id) {
      toast(tr('请点击另一条管线', 'Click the other pipe'), 'info', 3);
      return;
    }
    await mergeWith(other);
    return;
  }
  const target = state.target;
  const at = await snapAt(pick.screen, {
    surface: mode === 'split' && pick.props && String(pick.props.id) === target.id ? pick.surface : null,
    skip: mode === 'move' ? (c) => c.id === target.id || c.node === target.id
      : mode === 'split' ? (c) => c.kind === 'node' || Boolean(c.node) : null,
  });
  if (!at) {
    toast(tr('请点击地图上的位置', 'Click a place on the map'), 'info', 3);
    return;
  }
  if (mode === 'pipe') {
    if (!state.start) {
      state.start = at;
      layer();
      state.marks.anchor(at.position);
      sayStatus(`起点：${endText(at, 'zh')}，再点击终点。`, `Start: ${endText(at, 'en')}; now click the end.`);
      return;
    }
    const a = state.start;
    state.start = null;
    state.marks.anchor(null);
    sayStatus('填写新管线的属性，然后添加。', 'Fill in the new pipe, then add it.');
    await pipeForm(a, at);
  } else if (mode === 'point') await pointForm(at);
  else if (mode === 'move') await moveTo(at);
  else if (mode === 'split') await splitAt(at);
}

let pending = null;
let frameAsked = false;

function onMove(movement) {
  if (!['pipe', 'point', 'move', 'split'].includes(state.mode) && !state.dragging) return;
  pending = movement.endPosition;
  if (frameAsked) return;
  frameAsked = true;
  requestAnimationFrame(async () => {
    frameAsked = false;
    const screen = pending;
    const target = state.target;
    const skip = state.mode === 'move' && target ? (c) => c.id === target.id || c.node === target.id : null;
    try {
      layer();
      state.marks.show(await snapAt(screen, { skip }));
    } catch {
      // candidates not readable now: no ring
    }
  });
}

function onDown(event) {
  if (state.mode !== 'move' || !state.target) return;
  const coords = state.target.doc.geometry && state.target.doc.geometry.coordinates;
  if (!coords) return;
  const off = world.frame ? world.frame.geoid_offset_m || 0 : 0;
  const p = Cesium.SceneTransforms.worldToWindowCoordinates(world.scene, Cesium.Cartesian3.fromDegrees(coords[0], coords[1], (coords[2] || 0) + off));
  if (!p || Math.hypot(p.x - event.position.x, p.y - event.position.y) > 12) return;
  state.dragging = true;
  world.scene.screenSpaceCameraController.enableInputs = false;
}

async function onUp(event) {
  if (!state.dragging) return;
  state.dragging = false;
  state.dragEnded = Date.now();
  world.scene.screenSpaceCameraController.enableInputs = true;
  const target = state.target;
  const at = await snapAt(event.position, { skip: (c) => c.id === target.id || c.node === target.id });
  if (at) await moveTo(at);
}

function listen() {
  if (state.handler) return;
  const h = new Cesium.ScreenSpaceEventHandler(world.scene.canvas);
  h.setInputAction(onMove, Cesium.ScreenSpaceEventType.MOUSE_MOVE);
  h.setInputAction(onDown, Cesium.ScreenSpaceEventType.LEFT_DOWN);
  h.setInputAction(onUp, Cesium.ScreenSpaceEventType.LEFT_UP);
  state.handler = h;
}

function unlisten() {
  if (state.handler) state.handler.destroy();
  state.handler = null;
  if (state.dragging) world.scene.screenSpaceCameraController.enableInputs = true;
  state.dragging = false;
}

/** Esc while drawing: drop the drawing (the tool stays); Esc with nothing drawn leaves the tool. */
function onKey(e) {
  if (e.key !== 'Escape' || !state.handler) return;
  if (state.start || ['move', 'split', 'merge'].includes(state.mode)) {
    e.stopImmediatePropagation();
    const keep = state.target;
    setMode(keep ? 'select' : state.mode === 'pipe' ? 'pipe' : 'select');
    if (keep) select(keep.kind, keep.id);
  }
}
document.addEventListener('keydown', onKey, true);

function leave() {
  unlisten();
  state.start = null;
  state.target = null;
  state.mode = 'select';
  if (state.marks) state.marks.clear();
  clearMarks();
  if (panelOwner() === 'edit') clearPanel();
  state.ui = null;
  state.view = null;
  state.said = null;
}

register({
  id: 'edit',
  get label() { return tr('编辑', 'Edit'); },
  get hint() {
    return tr('数据编辑：选择要素，或加管线、加管点；Esc 取消当前绘制。', 'Edit: select a feature, or add a pipe or a point; Esc cancels the drawing.');
  },
  start() {
    layer();
    listen();
    render();
  },
  stop: unlisten,
  leave,
  click(pick) {
    return onClick(pick).catch((err) => showProblem(err));
  },
});

/** The edit tool's state, for tests: mode, target, undo labels, last answer, last error, conflict. */
export function editState() {
  return {
    mode: state.mode, target: state.target ? { kind: state.target.kind, id: state.target.id, version: state.target.doc.properties.version } : null,
    start: state.start ? { snap: state.start.snap ? state.start.snap.id : null } : null,
    undo: state.undo.map((u) => tr(...u.label)), last: state.last, conflict: state.conflict,
    error: state.error ? { status: state.error.status, description: state.error.description || state.error.message } : null,
    marks: state.layer ? state.layer.entities.values.length : 0,
  };
}

