#!/usr/bin/env bash
# The whole pytest suite (pytest-qt included) under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m pytest "$@"
