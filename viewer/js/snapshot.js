// The view as a picture (导出图片): the 3D map and its legend drawn into one PNG.
//
// WebGL keeps no picture between frames (the scene is made without preserveDrawingBuffer), so
// the scene is rendered and copied onto a 2D canvas in the same task, then the legend is drawn
// over its lower left corner.

import { world } from './scene.js';

const FONT = '"Noto Sans SC", "Noto Sans CJK SC", system-ui, sans-serif';

function legendBox(ctx, k, title, rows, note) {
  const pad = 10 * k;
  const line = 20 * k;
  const swatch = 14 * k;
  ctx.font = `bold ${14 * k}px ${FONT}`;
  let width = ctx.measureText(title).width;
  ctx.font = `${12 * k}px ${FONT}`;
  const texts = rows.map((r) => (r.detail !== undefined && r.detail !== null
    ? `${r.label}  ${Number(r.detail).toFixed(1)} km` : r.label));
  for (const t of texts) width = Math.max(width, swatch + 8 * k + ctx.measureText(t).width);
  if (note) width = Math.max(width, ctx.measureText(note).width);
  return { pad, line, swatch, texts, w: width + 2 * pad, h: pad * 2 + line * (rows.length + 1 + (note ? 1 : 0)) };
}

/** Draw the legend (title, rows of {label, css, detail km}, a note) in the lower left corner. */
function drawLegend(ctx, k, title, rows, note) {
  const b = legendBox(ctx, k, title, rows, note);
  const x0 = 12 * k;
  const y0 = ctx.canvas.height - b.h - 12 * k;
  ctx.fillStyle = 'rgba(17, 20, 24, 0.88)';
  ctx.fillRect(x0, y0, b.w, b.h);
  ctx.strokeStyle = '#56606c';
  ctx.lineWidth = k;
  ctx.strokeRect(x0, y0, b.w, b.h);
  ctx.textBaseline = 'middle';
  ctx.fillStyle = '#e8ebef';
  ctx.font = `bold ${14 * k}px ${FONT}`;
  let y = y0 + b.pad + b.line / 2;
  ctx.fillText(title, x0 + b.pad, y);
  ctx.font = `${12 * k}px ${FONT}`;
  rows.forEach((r, i) => {
    y += b.line;
    ctx.fillStyle = r.css;
    ctx.fillRect(x0 + b.pad, y - b.swatch / 2, b.swatch, b.swatch);
    ctx.fillStyle = '#e8ebef';
    ctx.fillText(b.texts[i], x0 + b.pad + b.swatch + 8 * k, y);
  });
  if (note) {
    ctx.fillStyle = '#9aa4af';
    ctx.fillText(note, x0 + b.pad, y + b.line);
  }
}

/** The map as it is now with the legend, as a PNG data URL of the map canvas's pixel size. */
export function viewPng(title, rows, note = '') {
  const map = world.scene.canvas;
  world.scene.render();
  const out = document.createElement('canvas');
  out.width = map.width;
  out.height = map.height;
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#14171b';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(map, 0, 0);
  drawLegend(ctx, out.width / Math.max(1, map.clientWidth), title, rows, note);
  return out.toDataURL('image/png');
}

/** Save a data URL as a file. */
export function download(url, name) {
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}
