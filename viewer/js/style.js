// Colours and what is shown: the tileset's style as functions of each feature's metadata.
//
// Pipe features carry id, utility, subtype, size, material, depth_m, built, owner, status;
// fitting (node) features id, kind, utility, name (tiles/content.py). One Cesium3DTileStyle
// with JavaScript functions reads the viewer's state below, so a change of colour mode,
// layer visibility or highlight is one `tileset.makeStyleDirty()`.

/* global Cesium */

import { named, tr } from './i18n.js';

/** CJJ 61-2017 appendix B utility colours (DOMAIN.md). */
export const UTILITIES = [
  { code: 'JS', en: 'Water supply', zh: '给水', rgb: [0, 255, 255] },
  { code: 'PS', en: 'Drainage', zh: '排水', rgb: [76, 57, 38] },
  { code: 'RQ', en: 'Gas', zh: '燃气', rgb: [255, 0, 255] },
  { code: 'RL', en: 'Heat', zh: '热力', rgb: [255, 128, 0] },
  { code: 'DL', en: 'Power', zh: '电力', rgb: [255, 0, 0] },
  { code: 'TX', en: 'Telecom', zh: '通信', rgb: [0, 255, 0] },
  { code: 'GY', en: 'Industrial', zh: '工业', rgb: [0, 0, 0] },
  { code: 'QT', en: 'Other / unknown', zh: '其他', rgb: [102, 0, 204] },
];
export const UTILITY = Object.fromEntries(UTILITIES.map((u) => [u.code, u]));

/** Pressurised networks: the ones a shutoff applies to. */
export const PRESSURISED = new Set(['JS', 'RQ', 'RL']);

/** Materials as surveyed (Chinese or English) -> colour; others get a colour from their name. */
const MATERIAL_COLOURS = {
  钢: '#4e79a7', steel: '#4e79a7',
  球墨铸铁: '#59a14f', 'ductile iron': '#59a14f',
  铸铁: '#9c755f', 'cast iron': '#9c755f',
  PE: '#f28e2b', HDPE: '#ffbe7d',
  PVC: '#e15759', 'PVC-U': '#e15759', UPVC: '#e15759',
  砼: '#bab0ac', 混凝土: '#bab0ac', concrete: '#bab0ac',
  钢筋砼: '#76b7b2', 钢筋混凝土: '#76b7b2', RC: '#76b7b2',
  铜: '#b07aa1', copper: '#b07aa1',
  光纤: '#edc948', fibre: '#edc948', fiber: '#edc948',
};
const EXTRA = ['#ff9da7', '#8cd17d', '#d37295', '#a0cbe8', '#f1ce63', '#86bcb6', '#d4a6c8', '#fabfd2'];

/** Decades built, oldest to newest, on a perceptual ramp (viridis). */
const DECADE_RAMP = ['#440154', '#46327e', '#365c8d', '#277f8e', '#1fa187', '#4ac16d', '#a0da39', '#fde725'];
const FIRST_DECADE = 1950;

export const ABANDONED = '#969696';
/** White for marks: pure white would mean "keep the tile's colour" to CesiumJS's styling. */
export const MARK_WHITE = '#f2f2f2';
/** A path or a set an analysis found: gold, apart from every utility colour. */
export const MARK_GOLD = '#ffd60a';
export const STATUS_ALPHA = { active: 1.0, abandoned: 1.0, planned: 0.7, proposed: 0.45 };

const cache = new Map();
function colour(css) {
  let c = cache.get(css);
  if (!c) {
    c = Cesium.Color.fromCssColorString(css);
    cache.set(css, c);
  }
  return c;
}

export function rgbCss(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

export function utilityCss(code) {
  return rgbCss((UTILITY[code] || UTILITY.QT).rgb);
}

function hashIndex(text, n) {
  let h = 0;
  for (let i = 0; i < text.length; i += 1) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return h % n;
}

export function materialCss(material) {
  if (!material) return '#7f7f7f';
  return MATERIAL_COLOURS[material] || MATERIAL_COLOURS[material.toLowerCase?.()] ||
    EXTRA[hashIndex(material, EXTRA.length)];
}

/** The year in a `built` value ('2005', '2005-06-01', 2005), or null. */
export function builtYear(built) {
  if (built === undefined || built === null) return null;
  const m = String(built).match(/(1[89]\d\d|20\d\d)/);
  return m ? Number(m[1]) : null;
}

export function decadeCss(year) {
  if (year === null) return '#7f7f7f';
  const k = Math.max(0, Math.min(DECADE_RAMP.length - 1, Math.floor((year - FIRST_DECADE) / 10)));
  return DECADE_RAMP[k];
}

export function decadeLabel(year) {
  if (year === null) return tr('年代不详', 'unknown');
  if (year < FIRST_DECADE + 10) return tr(`${FIRST_DECADE + 10} 年以前`, `before ${FIRST_DECADE + 10}`);
  const d = Math.floor(year / 10) * 10;
  const last = FIRST_DECADE + 10 * (DECADE_RAMP.length - 1);
  return d >= last ? tr(`${last} 年代及以后`, `${last}s and later`) : tr(`${d} 年代`, `${d}s`);
}

/** Lighten a fitting's utility colour towards concrete grey, as the tiles do. */
function fittingCss(code) {
  const rgb = (UTILITY[code] || UTILITY.QT).rgb.map((v) => Math.round(v * 0.6 + 200 * 0.4));
  return rgbCss(rgb);
}

// ------------------------------------------------------------------ thematic maps (专题图)
/** Service life (years) of a pipe by material: the design basis of the material's standard.
 * - PE, PVC-U: 50 a, the long-term hydrostatic strength the pipes are rated on (ISO 9080;
 *   GB/T 13663.2-2018 PE water pipes, GB/T 10002.1-2006 PVC-U water pipes).
 * - Ductile iron, steel, concrete, reinforced concrete: 50 a, the design working life of
 *   ordinary structures (GB 50153-2008), used for buried pipeline structures
 *   (GB 50332-2002 给水排水工程管道结构设计规范).
 * - Grey cast iron 30 a: listed for renewal outright by 国办发〔2022〕22号 (below).
 * A planning default, to be replaced by the office's own asset policy where it has one. */
export const SERVICE_LIFE_BY_MATERIAL = {
  PE: 50, HDPE: 50, PVC: 50, 'PVC-U': 50, UPVC: 50,
  球墨铸铁: 50, 'ductile iron': 50, 钢: 50, steel: 50,
  砼: 50, 混凝土: 50, concrete: 50, 钢筋砼: 50, 钢筋混凝土: 50, RC: 50,
  铸铁: 30, 灰口铸铁: 30, 'cast iron': 30,
};
/** Age at which a network's pipes are due for renewal: 城市燃气管道等老化更新改造实施方案
 * (2022—2025年), 国办发〔2022〕22号: gas and heat 20 a, water supply 30 a, drainage 50 a. */
export const RENEWAL_AGE_BY_UTILITY = { RQ: 20, RL: 20, JS: 30, PS: 50 };
/** Where neither table says: the 50 a design working life of ordinary structures. */
export const DEFAULT_SERVICE_LIFE = 50;

/** The service life (years) of a pipe: its material's, capped by its network's renewal age. */
export function serviceLife(material, utility) {
  const m = material ? (SERVICE_LIFE_BY_MATERIAL[material] ?? SERVICE_LIFE_BY_MATERIAL[material.toLowerCase?.()]) : undefined;
  const u = RENEWAL_AGE_BY_UTILITY[utility];
  if (m === undefined && u === undefined) return DEFAULT_SERVICE_LIFE;
  return Math.min(m ?? Infinity, u ?? Infinity);
}

/** Classes of age / service life, young to overdue, and "unknown" (no year built). */
export const AGE_CLASSES = [
  { max: 0.5, get label() { return tr('< 50% 使用年限', '< 50% of service life'); }, css: '#1a9850' },
  { max: 0.8, label: '50–80%', css: '#a6d96a' },
  { max: 1.0, get label() { return tr('80–100% 临近', '80–100% nearing'); }, css: '#fdae61' },
  { max: 1.5, get label() { return tr('100–150% 超期', '100–150% overdue'); }, css: '#e34a33' },
  { max: Infinity, get label() { return tr('≥ 150% 严重超期', '≥ 150% long overdue'); }, css: '#7f0000' },
];
const UNKNOWN_AGE = { get label() { return tr('年代不详', 'year unknown'); }, css: '#7f7f7f' };

/** The age class (index into AGE_CLASSES) of a pipe, or -1 when its year is unknown. */
export function ageClass(built, material, utility, year = new Date().getFullYear()) {
  const y = builtYear(built);
  if (y === null) return -1;
  const ratio = Math.max(0, year - y) / serviceLife(material, utility);
  return AGE_CLASSES.findIndex((c) => ratio < c.max);
}

/** Owners (权属单位), a categorical palette in the order the layers panel lists them (longest
 * first, from /stats); owners beyond the palette share grey. */
const OWNER_PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1',
  '#ff9da7', '#9c755f', '#86bcb6'];
const ownerColours = new Map();
export const OTHER_OWNER = '#bab0ac';

export function setOwners(owners) {
  ownerColours.clear();
  owners.forEach((o, i) => ownerColours.set(o || '', i < OWNER_PALETTE.length ? OWNER_PALETTE[i] : OTHER_OWNER));
}

export function ownerCss(owner) {
  return ownerColours.get(owner || '') || (owner ? OTHER_OWNER : '#7f7f7f');
}

/** A feature's value of a statistics dimension, as /stats names it ('' when missing): the
 * decade is '1990s' from the year built. */
export function featureValue(feature, property) {
  if (property === 'decade') {
    const y = builtYear(feature.getProperty('built'));
    return y === null ? '' : `${Math.floor(y / 10) * 10}s`;
  }
  const v = feature.getProperty(property);
  return v === undefined || v === null ? '' : String(v);
}

// ------------------------------------------------------------------ thematic maps the tiles lack
/** Pressure class (GB 50028 gas classes, then nominal pressure), survey accuracy (CJJ 61 plan
 * tolerance) and criticality (customers cut off, from the stored results) are served as class
 * maps (GET /view/theme/{name}: {classes, features: {id: k}, none: what the rest are}). */
export const THEME_PALETTES = {
  pressure: ['#c6dbef', '#9ecae1', '#6baed6', '#fd8d3c', '#f16913', '#d94801', '#7f2704',
    '#c7e9c0', '#74c476', '#31a354', '#006d2c'],
  accuracy: ['#1a9850', '#91cf60', '#fee08b', '#fc8d59', '#d73027'],
  // customers cut off by the pipe's shutoff: the criticality layer's ramp (criticality.js)
  criticality: ['#fee391', '#fec44f', '#fe9929', '#ec7014', '#b30000'],
};
const NO_CLASS = '#7f7f7f';
/** name -> {classes, counts, features: Map(id -> class index)}, once read. */
export const themes = {};

export function setTheme(name, answer) {
  themes[name] = { ...answer, features: new Map(Object.entries(answer.features || {})) };
}

function themeCss(name, id) {
  const k = themes[name].features.get(String(id));
  return k === undefined ? NO_CLASS : THEME_PALETTES[name][k] || NO_CLASS;
}

// ------------------------------------------------------------------ the viewer's display state
export const display = {
  colourBy: 'utility', // utility | material | decade | age | owner
  hiddenUtilities: new Set(),
  /** Show only the pipes of this subtype (YS, WS, ...), when a search chose one. */
  onlySubtype: null,
  /** Show only pipes whose `property` (a /stats dimension) is one of `values` ('' for none):
   * {property, values}, when a statistics bar was clicked; null shows all. */
  only: null,
  showAbandoned: true,
  showPlanned: true, // planned and proposed pipes of the twin
  showFittings: true,
  /** id -> css colour of features an analysis marks (shutoff, proposal findings, profile). */
  marks: new Map(),
  /** Fade what is not marked, so the marks stand out. */
  fadeUnmarked: false,
  selected: null,
};

const SELECTED = '#ffff00';
const scratch = new Cesium.Color();

function isFitting(feature) {
  return feature.getProperty('kind') !== undefined;
}

function baseCss(feature, fitting) {
  const utility = feature.getProperty('utility');
  if (fitting) return fittingCss(utility);
  const status = feature.getProperty('status');
  if (status === 'abandoned') return ABANDONED;
  if (display.colourBy === 'material') return materialCss(feature.getProperty('material'));
  if (display.colourBy === 'decade') return decadeCss(builtYear(feature.getProperty('built')));
  if (display.colourBy === 'age') {
    const k = ageClass(feature.getProperty('built'), feature.getProperty('material'), utility);
    return k < 0 ? UNKNOWN_AGE.css : AGE_CLASSES[k].css;
  }
  if (display.colourBy === 'owner') return ownerCss(feature.getProperty('owner'));
  if (themes[display.colourBy]) return themeCss(display.colourBy, feature.getProperty('id'));
  return utilityCss(utility);
}

function evaluateColor(feature, result) {
  const out = result || new Cesium.Color();
  const id = feature.getProperty('id');
  if (id !== undefined && id === display.selected) return Cesium.Color.clone(colour(SELECTED), out);
  const mark = display.marks.get(id);
  if (mark) return Cesium.Color.clone(colour(mark), out);
  const fitting = isFitting(feature);
  Cesium.Color.clone(colour(baseCss(feature, fitting)), out);
  if (!fitting) out.alpha = STATUS_ALPHA[feature.getProperty('status')] ?? 1.0;
  if (display.fadeUnmarked && display.marks.size) {
    Cesium.Color.lerp(out, Cesium.Color.GRAY, 0.5, scratch);
    Cesium.Color.clone(scratch, out);
    out.alpha = 0.35;
  }
  return out;
}

function evaluateShow(feature) {
  const id = feature.getProperty('id');
  if (display.marks.has(id) || id === display.selected) return true;
  if (display.hiddenUtilities.has(feature.getProperty('utility'))) return false;
  if (isFitting(feature)) return display.showFittings && !display.only;
  if (display.only && !display.only.values.includes(featureValue(feature, display.only.property))) return false;
  if (display.onlySubtype && feature.getProperty('subtype') !== display.onlySubtype) return false;
  const status = feature.getProperty('status');
  if (status === 'abandoned') return display.showAbandoned;
  if (status === 'planned' || status === 'proposed') return display.showPlanned;
  return true;
}

/** The style of the tileset: colour and visibility from `display`. */
export function makeStyle() {
  const style = new Cesium.Cesium3DTileStyle();
  style.color = { evaluateColor, evaluate: (f) => evaluateColor(f) };
  style.show = { evaluate: evaluateShow };
  return style;
}

/** Legend rows of the current colour mode: [{label, css, detail}]. */
export function legendRows(stats) {
  if (display.colourBy === 'material') {
    const rows = (stats.material || []).map((r) => ({
      label: r.material || tr('材质不详', 'unknown'), css: materialCss(r.material), detail: r.length_km,
    }));
    return rows.concat([{ label: named('status', 'abandoned'), css: ABANDONED }]);
  }
  if (display.colourBy === 'decade') {
    const seen = new Map();
    for (const r of stats.decade || []) {
      const year = r.decade ? Number(String(r.decade).slice(0, 4)) : null;
      const label = decadeLabel(year);
      const prev = seen.get(label);
      seen.set(label, { label, css: decadeCss(year), detail: (prev ? prev.detail : 0) + r.length_km });
    }
    return [...seen.values()].concat([{ label: named('status', 'abandoned'), css: ABANDONED }]);
  }
  if (display.colourBy === 'age') {
    return AGE_CLASSES.map((c) => ({ label: c.label, css: c.css }))
      .concat([{ label: UNKNOWN_AGE.label, css: UNKNOWN_AGE.css }, { label: named('status', 'abandoned'), css: ABANDONED }]);
  }
  if (themes[display.colourBy]) {
    const t = themes[display.colourBy];
    const palette = THEME_PALETTES[display.colourBy];
    return t.classes.map((c, k) => ({ label: tr(c.zh, c.en), css: palette[k], count: t.counts[k] }))
      .filter((r) => r.count > 0)
      .concat([{ label: t.none ? tr(t.none.zh, t.none.en) : tr('无数据', 'not recorded'), css: NO_CLASS },
        { label: tr('废弃', 'abandoned'), css: ABANDONED }]);
  }
  if (display.colourBy === 'owner') {
    const owners = stats.owner || [];
    const rows = owners.slice(0, OWNER_PALETTE.length).map((r) => ({
      label: r.owner || tr('权属不详', 'unknown'), css: ownerCss(r.owner), detail: r.length_km,
    }));
    const rest = owners.slice(OWNER_PALETTE.length);
    if (rest.length) {
      rows.push({ label: tr(`其他 ${rest.length} 个权属单位`, `${rest.length} other owners`), css: OTHER_OWNER,
        detail: rest.reduce((a, r) => a + r.length_km, 0) });
    }
    return rows.concat([{ label: named('status', 'abandoned'), css: ABANDONED }]);
  }
  return [{ label: named('status', 'abandoned'), css: ABANDONED },
    { label: tr('规划/拟建（半透明）', 'planned / proposed (translucent)'), css: 'rgba(200,200,200,0.5)' }];
}
