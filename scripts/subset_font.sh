#!/usr/bin/env bash
# Makes assets/fonts/DejaVuSans-ascii.ttf, the loss chart's embedded font (src/data/chart.rs):
# DejaVu Sans cut down to printable ASCII plus the middle dot and the minus sign, without
# hinting, so the crate carries a 10 KB font instead of needing system fonts.
# Needs fontTools (`pip install fonttools`) and the Debian package fonts-dejavu-core.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
pyftsubset "$src" --unicodes="U+0020-007E,U+00B7,U+2212" --layout-features='' \
    --no-hinting --output-file=assets/fonts/DejaVuSans-ascii.ttf
