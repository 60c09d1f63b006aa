// Where CesiumJS finds its workers and assets; a file, not inline, so the CSP needs no 'unsafe-inline'.
window.CESIUM_BASE_URL = '/cesium/';
