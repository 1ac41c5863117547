#!/usr/bin/env bash
# Re-fetch the MapLibre GL JS files the map viewer serves (src/geoclassify/viewer/static/vendor/) from the npm
# registry: the ES module build, its worker, the stylesheet and the licence. Nothing is fetched at run time.
#   scripts/vendor_maplibre.sh [VERSION]     (default: the version pinned below)
set -euo pipefail
VERSION="${1:-6.17.0}"
cd "$(dirname "$0")/.."
target=src/geoclassify/viewer/static/vendor
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "maplibre-gl@${VERSION}" >/dev/null && tar xzf "maplibre-gl-${VERSION}.tgz")
mkdir -p "$target"
for file in dist/maplibre-gl.mjs dist/maplibre-gl-worker.mjs dist/maplibre-gl.css LICENSE.txt; do
  cp "$scratch/package/$file" "$target/$(basename "$file")"
done
# The bundles end by naming source maps that are not vendored; drop the comment so browsers do not ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$target/maplibre-gl.mjs" "$target/maplibre-gl-worker.mjs"
echo "maplibre-gl ${VERSION}" > "$target/VERSION.txt"
echo "vendored maplibre-gl ${VERSION} into $target"
