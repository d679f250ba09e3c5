#!/usr/bin/env bash
# Open an evaluation report in headless Chromium (Debian's package; installed here if missing),
# fail on any console error or page error, and keep a screenshot for people to look at.
#
#   scripts/check_report_html.sh runs/tiny/dpo/eval/report.html [screenshot.png]
set -euo pipefail
page=$(realpath "$1")
shot=${2:-${page%.html}.png}
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0)
# The DOM after load must hold the report's title and plots.
dom=$(chromium "${flags[@]}" --dump-dom "file://$page" 2>"$profile/log")
grep -q "<h1>evalverse evaluation</h1>" <<<"$dom" || { echo "report did not render: no title" >&2; exit 1; }
n_svg=$(grep -o "<svg" <<<"$dom" | wc -l)
# Chromium logs page console messages and uncaught errors as CONSOLE lines.
if grep -E "CONSOLE|Uncaught|ERR_FILE_NOT_FOUND|Failed to load" "$profile/log" >&2; then
  echo "console errors while rendering $page" >&2
  exit 1
fi
chromium "${flags[@]}" --window-size=1280,2000 --screenshot="$shot" "file://$page" 2>/dev/null
echo "ok: $page rendered with $n_svg plots and no console errors; screenshot $shot"
