#!/usr/bin/env bash
# Make sure the system packages PipeTwin needs are present: PostgreSQL 15 + PostGIS 3, GDAL's
# command-line tools (ogr2ogr, ogrinfo), Chromium for the browser tests and Node.js for the
# front-end packages, Mosquitto for live readings (the project starts its own private broker;
# see `twin broker`). As root they are installed with apt; otherwise the exact command is printed
# and the script fails.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/postgis.control ] || need+=(postgresql-15-postgis-3)
command -v ogr2ogr >/dev/null 2>&1 || need+=(gdal-bin)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# Off-screen 3D pictures (VTK renders through OSMesa: no GPU, no display) and CJK fonts for the
# pictures, the PDFs (Droid Sans Fallback: one TrueType file, embedded) and the browser.
ls /usr/lib/*/libOSMesa.so.8 >/dev/null 2>&1 || need+=(libosmesa6)
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || need+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || need+=(fonts-droid-fallback)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)  # the PDFs' Latin text
# meshoptimizer (tile compression) is built from its PyPI source: a C++ compiler.
command -v g++ >/dev/null 2>&1 || need+=(g++)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "PipeTwin needs: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
