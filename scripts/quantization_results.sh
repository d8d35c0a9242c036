#!/usr/bin/env bash
# The numbers of docs/quantization.md's results table: `lit-vir quantize` on each checkpoint given (every row:
# FP32, W8A8, W6A6, W4A4, MP-W5A5, MP-W4A4 for MPTQ-ViT, SQ-b off, OPT-m off), then every report gathered in
# $OUT/quantization_results.json (a list of the commands' reports) and $OUT/quantization_results.md (their tables).
#   scripts/quantization_results.sh logs/<vit-small run>/version_0/checkpoints/last.ckpt \
#                                   logs/<vir-1 run>/version_0/checkpoints/last.ckpt
# Settings (environment): OUT (logs/quantization); CALIBRATION (256 training images); SEARCH_IMAGES (the search's
# loss on the first N of them; default all); LAZY=1 (the lazy greedy, about U + 2·steps passes instead of
# U·steps: a 9-block ViT-Small has U = 90 units); SOFTMAX=1 (also MPTQ-ViT with the log2 and uniform softmax
# quantisers, uniform widths only); EXTRA (more `lit-vir quantize` arguments, e.g. "--device cuda").
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CKPT... (see the comments at the top)" >&2; exit 2; }
OUT=${OUT:-logs/quantization}
common=(--calibration "${CALIBRATION:-256}")
if [ -n "${SEARCH_IMAGES:-}" ]; then common+=(--search_images "$SEARCH_IMAGES"); fi
if [ "${LAZY:-0}" = 1 ]; then common+=(--lazy_search); fi
read -r -a extra <<< "${EXTRA:-}"
reports=()
for ckpt in "$@"; do
  [ -f "$ckpt" ] || { echo "$0: no checkpoint $ckpt" >&2; exit 2; }
  version=$(dirname "$(dirname "$ckpt")")  # logs/<save_dir>/<run name>/version_N
  run="$(basename "$(dirname "$version")")-$(basename "$version")"
  lit-vir quantize --ckpt_path "$ckpt" "${common[@]}" ${extra[@]+"${extra[@]}"} --output "$OUT/$run"
  reports+=("$OUT/$run/quantization.json")
  if [ "${SOFTMAX:-0}" = 1 ]; then
    lit-vir quantize --ckpt_path "$ckpt" "${common[@]}" ${extra[@]+"${extra[@]}"} \
      --variants mptq log2_softmax uniform_softmax --targets --output "$OUT/$run-softmax"
    reports+=("$OUT/$run-softmax/quantization.json")
  fi
done
python - "$OUT" "${reports[@]}" <<'PYTHON'
import json
import sys
from pathlib import Path

out, paths = Path(sys.argv[1]), [Path(path) for path in sys.argv[2:]]
(out / "quantization_results.json").write_text(json.dumps([json.loads(path.read_text()) for path in paths], indent=2))
(out / "quantization_results.md").write_text("\n".join(path.with_suffix(".md").read_text() for path in paths))
print(f"wrote {out}/quantization_results.json, {out}/quantization_results.md")
PYTHON
