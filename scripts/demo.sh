#!/usr/bin/env bash
# Open the demo in napari; with no display, run it under Xvfb and write a screenshot + summary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${DISPLAY:-}" ] && [ "${WSIROBUST_HEADLESS:-0}" != "1" ]; then
  exec .venv/bin/wsirobust demo "$@"
fi
exec xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/wsirobust demo --headless --out demo_output "$@"
