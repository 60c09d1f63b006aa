// Colours and what is shown: the tileset's style as functions of each feature's metadata.
//
// Pipe features carry id, utility, subtype, size, material, depth_m, built, owner, status;
// fitting (node) features id, kind, utility, name (tiles/content.py). One Cesium3DTileStyle
// with JavaScript functions reads the viewer's state below, so a change of colour mode,
// layer visibility or highlight is one `tileset.makeStyleDirty()`.

/* global Cesium */

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
  if (year === null) return 'unknown';
  if (year < FIRST_DECADE + 10) return `before ${FIRST_DECADE + 10}`;
  const d = Math.floor(year / 10) * 10;
  return d >= FIRST_DECADE + 10 * (DECADE_RAMP.length - 1) ? `${FIRST_DECADE + 10 * (DECADE_RAMP.length - 1)}s and later` : `${d}s`;
}

/** Lighten a fitting's utility colour towards concrete grey, as the tiles do. */
function fittingCss(code) {
  const rgb = (UTILITY[code] || UTILITY.QT).rgb.map((v) => Math.round(v * 0.6 + 200 * 0.4));
  return rgbCss(rgb);
}

// ------------------------------------------------------------------ the viewer's display state
export const display = {
  colourBy: 'utility', // utility | material | decade
  hiddenUtilities: new Set(),
  /** Show only the pipes of this subtype (YS, WS, ...), when a search chose one. */
  onlySubtype: null,
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
  if (isFitting(feature)) return display.showFittings;
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
      label: r.material || 'unknown', css: materialCss(r.material), detail: r.length_km,
    }));
    return rows.concat([{ label: 'abandoned', css: ABANDONED }]);
  }
  if (display.colourBy === 'decade') {
    const seen = new Map();
    for (const r of stats.decade || []) {
      const year = r.decade ? Number(String(r.decade).slice(0, 4)) : null;
      const label = decadeLabel(year);
      const prev = seen.get(label);
      seen.set(label, { label, css: decadeCss(year), detail: (prev ? prev.detail : 0) + r.length_km });
    }
    return [...seen.values()].concat([{ label: 'abandoned', css: ABANDONED }]);
  }
  return [{ label: 'abandoned', css: ABANDONED }, { label: 'planned / proposed (translucent)', css: 'rgba(200,200,200,0.5)' }];
}
