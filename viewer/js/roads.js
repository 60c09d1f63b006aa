// Roads for orientation (道路): centrelines and names from the pipes' road attribute
// (GET /view/roads), drawn on the ground under the pipes with their names; a toggle in the
// layers panel. Names show only within a few kilometres so they do not pile up far away.

/* global Cesium */

import { tr } from './i18n.js';
import { getJSON } from './api.js';
import { $, el, guard } from './ui.js';
import { overlay } from './tools.js';
import { addChip, removeChip } from './chips.js';
import { groundHeight } from './scene.js';

const state = { layer: null, shown: true, count: 0 };

function draw(fc) {
  const ds = state.layer || (state.layer = overlay('roads'));
  ds.entities.removeAll();
  const line = Cesium.Color.fromCssColorString('#d8d2c4').withAlpha(0.85);
  for (const f of fc.features) {
    // On the survey's ground, a little above it (not clamped: that needs GPU features).
    const positions = Cesium.Cartesian3.fromDegreesArrayHeights(
      f.geometry.coordinates.flatMap(([lon, lat]) => [lon, lat, groundHeight(lon, lat) + 0.3]));
    const mid = f.geometry.coordinates[Math.floor(f.geometry.coordinates.length / 2)];
    ds.entities.add({
      id: `road-${f.id}`,
      polyline: { positions, width: 3, material: line },
    });
    ds.entities.add({
      id: `road-label-${f.id}`,
      position: Cesium.Cartesian3.fromDegrees(mid[0], mid[1], groundHeight(mid[0], mid[1]) + 3),
      label: { text: f.properties.road, font: '14px "Noto Sans SC", sans-serif', fillColor: Cesium.Color.WHITE,
        outlineColor: Cesium.Color.BLACK, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        distanceDisplayCondition: new Cesium.DistanceDisplayCondition(0, 4000),
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
    });
  }
  ds.clustering.enabled = false;
  ds.show = state.shown;
  state.count = fc.features.length;
  roadsChip();
}

/** The roads' chip over the map (chips.js): × hides them, as the layer toggle does. */
function roadsChip() {
  if (!state.shown || !state.count) {
    removeChip('roads');
    return;
  }
  addChip('roads', ['道路', 'Roads'], () => {
    state.shown = false;
    if (state.layer) state.layer.show = false;
    const box = document.querySelector('input[data-role=roads]');
    if (box) box.checked = false;
  });
}

/** Read and draw the roads; a 道路 Roads toggle under the layers. */
export async function initRoads() {
  const box = el('input', { type: 'checkbox', checked: state.shown, dataset: { role: 'roads' } });
  box.addEventListener('change', () => {
    state.shown = box.checked;
    if (state.layer) state.layer.show = state.shown;
    roadsChip();
  });
  $('#roads-layer')?.replaceChildren(el('label', { class: 'toggle' }, box, tr('道路（名称取自测量数据）', 'Roads (names from the survey)')));
  await guard(tr('道路', 'The roads'), async () => draw(await getJSON('/view/roads')));
}

export function roadsState() {
  return { count: state.count, shown: state.shown };
}
