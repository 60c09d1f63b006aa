// Coordinates between the browser (lon, lat, ellipsoidal height) and the twin's CRS
// (easting, northing, normal height): the server transforms them (pyproj, /view/transform).

/* global Cesium */

import { postJSON } from './api.js';
import { toCartographic } from './scene.js';

/** [[lon, lat(, h)]] -> {points: [[e, n(, z)]], ground_z: [..] | null} in the twin CRS. */
export async function toTwin(points, ground = false) {
  return postJSON('/view/transform', { to: 'twin', points, ground });
}

/** [[e, n(, z)]] in the twin CRS -> [[lon, lat(, h)]]. */
export async function toLonLat(points) {
  if (!points.length) return [];
  return (await postJSON('/view/transform', { to: 'crs84', points })).points;
}

/** A Cartesian3 -> [lon, lat, h]. */
export function lonLatHeight(cartesian) {
  const c = toCartographic(cartesian);
  return [c.lon, c.lat, c.height];
}

export function cartesian([lon, lat, h = 0]) {
  return Cesium.Cartesian3.fromDegrees(lon, lat, h);
}

/** Distance (m) along the ellipsoid's surface between two Cartesian3, and their height difference. */
export function distances(a, b) {
  const ca = Cesium.Cartographic.fromCartesian(a);
  const cb = Cesium.Cartographic.fromCartesian(b);
  const geodesic = new Cesium.EllipsoidGeodesic(ca, cb);
  return {
    straight: Cesium.Cartesian3.distance(a, b),
    horizontal: geodesic.surfaceDistance,
    vertical: cb.height - ca.height,
  };
}
