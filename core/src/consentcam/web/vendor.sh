#!/usr/bin/env bash
# Vendor the browser libraries of the web UI into static/vendor from the npm registry (no CDN at run time).
# Versions and integrity hashes are pinned by package.json and package-lock.json beside this script; the copied
# files are committed, so building or installing ConsentCam never needs npm. Run again after changing a version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
nm="$work/node_modules"
out="$here/static/vendor"
rm -rf "$out/leaflet" "$out/leaflet-geoman" "$out/hls.js"
mkdir -p "$out/leaflet/images" "$out/leaflet-geoman" "$out/hls.js"

strip_map() { sed -e '/^\/\/# sourceMappingURL=/d' -e 's#/\*\# sourceMappingURL=[^*]*\*/##' "$1" > "$2"; }

strip_map "$nm/leaflet/dist/leaflet.js" "$out/leaflet/leaflet.js"
strip_map "$nm/leaflet/dist/leaflet.css" "$out/leaflet/leaflet.css"
cp "$nm/leaflet/dist/images/"*.png "$out/leaflet/images/"
cp "$nm/leaflet/LICENSE" "$out/leaflet/LICENSE"

g="$nm/@geoman-io/leaflet-geoman-free"
strip_map "$g/dist/leaflet-geoman.min.js" "$out/leaflet-geoman/leaflet-geoman.min.js"
strip_map "$g/dist/leaflet-geoman.css" "$out/leaflet-geoman/leaflet-geoman.css"
cp "$g/LICENSE" "$out/leaflet-geoman/LICENSE"

# hls.js plays the live feeds (HLS) in browsers without native HLS.
strip_map "$nm/hls.js/dist/hls.min.js" "$out/hls.js/hls.min.js"
cp "$nm/hls.js/LICENSE" "$out/hls.js/LICENSE"

# leaflet-geoman.min.js bundles its dependencies: keep each one's name, version, licence and licence text.
(cd "$work" && node -e '
const fs = require("fs"), path = require("path");
const lock = require("./package-lock.json");
const lines = ["Licences of the packages bundled in leaflet-geoman.min.js (from package-lock.json)", ""];
for (const [where, meta] of Object.entries(lock.packages).sort()) {
  if (!where || where === "node_modules/leaflet" || where === "node_modules/hls.js" || where.startsWith("node_modules/@types/")) continue;
  const dir = path.join(".", where);
  const text = fs.readdirSync(dir).filter((f) => /^(licen[cs]e|copying)/i.test(f))
    .map((f) => fs.readFileSync(path.join(dir, f), "utf8").trim()).join("\n\n");
  lines.push("=".repeat(78), `${where.replace(/^.*node_modules\//, "")} ${meta.version} (${meta.license || "see text"})`, "", text || "(no licence file shipped; licence: " + meta.license + ")", "");
}
fs.writeFileSync(process.argv[1], lines.join("\n"));
' "$out/leaflet-geoman/THIRD-PARTY-LICENSES.txt")

cat > "$out/README.md" <<NOTE
Vendored by ../../vendor.sh from the npm registry (versions pinned in ../../package-lock.json):
- leaflet $(node -p "require('$nm/leaflet/package.json').version") (BSD-2-Clause): leaflet/
- @geoman-io/leaflet-geoman-free $(node -p "require('$g/package.json').version") (MIT): leaflet-geoman/, with the licences of the packages it bundles
- hls.js $(node -p "require('$nm/hls.js/package.json').version") (Apache-2.0): hls.js/
Source map comments are removed; nothing else is changed.
NOTE
echo "vendored into $out"
