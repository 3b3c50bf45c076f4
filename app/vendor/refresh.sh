#!/usr/bin/env bash
# Refresh the vendored map and API-docs assets from the npm registry: `bash app/vendor/refresh.sh` (needs npm).
# Versions are pinned here and in README.md beside this script; change both together.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

fetch() {  # fetch NAME@VERSION: unpack the npm tarball into $work/NAME
    local spec="$1" name="${1%@*}"
    mkdir -p "$name"
    tar --warning=no-unknown-keyword -xzf "$(npm pack --silent "$spec")" -C "$name" --strip-components=1
}

copy() {  # copy PACKAGE DEST FILE...: copy files from an unpacked package into app/vendor/DEST
    local package="$1" dest="$here/$2"; shift 2
    for file in "$@"; do
        mkdir -p "$dest/$(dirname "$file")"
        cp "$package/$file" "$dest/$file"
    done
}

fetch leaflet@1.9.4
copy leaflet leaflet LICENSE dist/leaflet.js dist/leaflet.css \
    dist/images/layers.png dist/images/layers-2x.png \
    dist/images/marker-icon.png dist/images/marker-icon-2x.png dist/images/marker-shadow.png


fetch leaflet.markercluster@1.5.3
copy leaflet.markercluster leaflet.markercluster MIT-LICENCE.txt dist/leaflet.markercluster.js \
    dist/MarkerCluster.css dist/MarkerCluster.Default.css

fetch leaflet-measure@2.1.7
copy leaflet-measure leaflet-measure LICENSE dist/leaflet-measure.min.js dist/leaflet-measure.css \
    $(cd leaflet-measure && ls dist/images/*.png)

fetch geographiclib-geodesic@2.2.0
copy geographiclib-geodesic geographiclib-geodesic LICENSE.txt geographiclib-geodesic.min.js

fetch leaflet.fullscreen@3.0.0
copy leaflet.fullscreen leaflet.fullscreen LICENSE Control.FullScreen.js Control.FullScreen.css icon-fullscreen.svg

# the API docs (/docs and /redoc), served by app/routers/docs.py
fetch swagger-ui-dist@5.35.0
copy swagger-ui-dist swagger-ui-dist LICENSE swagger-ui-bundle.js swagger-ui.css favicon-32x32.png

fetch redoc@2.5.4
copy redoc redoc LICENSE bundles/redoc.standalone.js

echo "refreshed $(find "$here" -type f | wc -l) files in $here"
