#!/usr/bin/env bash
# Refresh the browser assets vendored under src/meterql/static/ (the GraphiQL
# explorer on /graphql, Swagger UI on /v1/docs, uPlot for the dashboard on /)
# from the npm registry.
#
# The pages must work with no network but our server, so these files ship in
# the wheel rather than come from a CDN. To move to another version, change a
# pin below, run this script, look at the pages (tests/test_browser.py and
# tests/test_dashboard.py do, in a headless Chromium) and commit the files
# together with VERSIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
static=src/meterql/static

# package@version  file in the tarball  destination under static/
assets=(
    "graphiql@3.9.0 graphiql.min.js graphiql/graphiql.min.js"
    "graphiql@3.9.0 graphiql.min.css graphiql/graphiql.min.css"
    "graphiql@3.9.0 LICENSE graphiql/LICENSE-graphiql.txt"
    # GraphiQL 3 runs on React 18: React 19 publishes no UMD build.
    "react@18.3.1 umd/react.production.min.js graphiql/react.production.min.js"
    "react@18.3.1 LICENSE graphiql/LICENSE-react.txt"
    "react-dom@18.3.1 umd/react-dom.production.min.js graphiql/react-dom.production.min.js"
    "react-dom@18.3.1 LICENSE graphiql/LICENSE-react-dom.txt"
    "swagger-ui-dist@5.35.0 swagger-ui-bundle.js swagger-ui/swagger-ui-bundle.js"
    "swagger-ui-dist@5.35.0 swagger-ui.css swagger-ui/swagger-ui.css"
    "swagger-ui-dist@5.35.0 LICENSE swagger-ui/LICENSE.txt"
    "swagger-ui-dist@5.35.0 NOTICE swagger-ui/NOTICE.txt"
    # The dashboard's chart: 50 KB, no dependencies, canvas drawing.
    "uplot@1.6.32 dist/uPlot.iife.min.js uplot/uPlot.iife.min.js"
    "uplot@1.6.32 dist/uPlot.min.css uplot/uPlot.min.css"
    "uplot@1.6.32 LICENSE uplot/LICENSE.txt"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
    echo "# Vendored browser assets: written by scripts/vendor_assets.sh, checked by tests/test_pages.py."
    echo "# sha256 path package@version:file"
} >"$work/VERSIONS"

for line in "${assets[@]}"; do
    read -r spec source dest <<<"$line"
    unpacked="$work/$spec"
    if [ ! -d "$unpacked" ]; then
        # npm pack checks the tarball against the registry's integrity hash.
        tarball=$(cd "$work" && npm pack --silent "$spec" | tail -n 1)
        mkdir -p "$unpacked"
        tar -xzf "$work/$tarball" -C "$unpacked"
    fi
    mkdir -p "$static/$(dirname "$dest")"
    cp "$unpacked/package/$source" "$static/$dest"
    echo "$(sha256sum "$static/$dest" | cut -d ' ' -f 1) $dest $spec:$source" >>"$work/VERSIONS"
done

cp "$work/VERSIONS" "$static/VERSIONS"
echo "vendored ${#assets[@]} files; see $static/VERSIONS"
