#!/usr/bin/env bash
# ctest "cli: report renders in headless Chromium": the audit report of the reference model's
# certificate, rendered by Debian's chromium to a PNG that is not blank (checked against a blank
# page rendered the same way) and to a DOM holding the verdict and the heatmap's cells.
# Exit 77 (skipped) where chromium is not installed (scripts/test.sh tries to install it).
# Usage: report_browser_test.sh HNF_VERIFY PNG_STATS SOURCE_DIR
set -euo pipefail
verify=$1 png_stats=$2 src=$3
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium ]]; then
  echo "chromium is not installed (Debian package chromium): skipped"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "report_browser_test: $*" >&2; exit 1; }

"$verify" report "$src/tests/fixtures/hnf-llama-4m-128.cert.json" --model "$src/models/hnf-llama-4m" \
  --attestation "$src/tests/fixtures/hnf-llama-4m-128.attestation.json" --public-key "$src/tests/fixtures/fixture.pub" \
  --html "$tmp/report.html" >/dev/null
printf '<!DOCTYPE html><html><body></body></html>\n' >"$tmp/blank.html"

# As root Chromium needs --no-sandbox; a profile of its own keeps runs independent.
browse() { timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --user-data-dir="$tmp/profile" "$@" 2>/dev/null; }
browse --window-size=1200,1400 --screenshot="$tmp/report.png" "file://$tmp/report.html" >/dev/null || true
browse --window-size=1200,1400 --screenshot="$tmp/blank.png" "file://$tmp/blank.html" >/dev/null || true
[[ -s $tmp/report.png ]] || fail "chromium wrote no screenshot of the report"
[[ -s $tmp/blank.png ]] || fail "chromium wrote no screenshot of the blank page"

read -r w h differ colours < <("$png_stats" "$tmp/report.png")
read -r _ _ blank_differ _ < <("$png_stats" "$tmp/blank.png")
echo "report screenshot ${w}x${h}: $differ pixels differ from the background, $colours colours; blank page: $blank_differ"
((blank_differ == 0)) || fail "the blank page's screenshot is not uniform: the check cannot tell blank from rendered"
((differ * 50 > w * h)) || fail "the report's screenshot is blank (fewer than 2% of the pixels differ from the background)"
((colours >= 32)) || fail "the report's screenshot has only $colours colours (the heatmap alone has more)"

browse --dump-dom "file://$tmp/report.html" >"$tmp/dom.html" || fail "chromium --dump-dom failed"
grep -q 'id="verdict" class="verdict certified">CERTIFIED<' "$tmp/dom.html" || fail "the rendered DOM lacks the verdict"
grep -q '<svg id="heatmap"' "$tmp/dom.html" || fail "the rendered DOM lacks the heatmap"
cells=$(grep -o '<rect class="cell"' "$tmp/dom.html" | wc -l)
((cells == 32)) || fail "the rendered heatmap has $cells cells, expected 32 (4 layers x 8 blocks)"
echo "rendered DOM: verdict CERTIFIED, heatmap with $cells cells"
