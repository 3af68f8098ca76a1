#!/usr/bin/env bash
# Measures `klm quantize` on the `small` preset: trains it briefly on WikiText-2 valid.txt (the training split
# is not in ../shared/data; its README says: valid.txt to train, test.txt held out), then quantizes it int8
# and int4 on each backend; weight bytes, perplexity on a slice of test.txt and greedy tokens/s before and
# after are printed and recorded in each OUT/summary.json (read the ratios: absolute speed depends on the load).
# Usage: examples/benchmarks/quantize.sh DATA_DIR OUT_DIR [STEPS] [HELD_OUT_BYTES] [SPEED_TOKENS]
set -euo pipefail
data=${1:?DATA_DIR}; out=${2:?OUT_DIR}; steps=${3:-200}; held_out=${4:-100000}; speed=${5:-32}
mkdir -p "$out"
head -c 2000000 "$data/valid.txt" > "$out/train.txt"
head -c "$held_out" "$data/test.txt" > "$out/held_out.txt"
if [ ! -f "$out/small/best.keras" ]; then
  KERAS_BACKEND=torch klm pretrain --preset small --data "$out/train.txt" --run-dir "$out/small" \
    --max-steps "$steps" --seq-len 128 --batch-size 8 --verbose lines
fi
for backend in tensorflow jax torch; do
  for mode in int8 int4; do
    [ -f "$out/small-$mode-$backend/summary.json" ] && continue
    klm quantize "$out/small" "$out/small-$mode-$backend" --mode "$mode" --backend "$backend" \
      --eval-data "$out/held_out.txt" --speed-tokens "$speed"
  done
done
