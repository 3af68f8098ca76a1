#!/usr/bin/env bash
# Measures `klm quantize` on the `small` preset: trains it briefly on WikiText-2 test.txt, then quantizes it
# int8 and int4 on each backend; weight bytes, perplexity on valid.txt and greedy tokens/s before and after
# are printed and recorded in each OUT/summary.json (read the ratios: absolute speed depends on the load).
# Usage: examples/benchmarks/quantize.sh DATA_DIR OUT_DIR [STEPS]  (DATA_DIR holds test.txt and valid.txt)
set -euo pipefail
data=${1:?DATA_DIR}; out=${2:?OUT_DIR}; steps=${3:-200}
mkdir -p "$out"
head -c 2000000 "$data/test.txt" > "$out/train.txt"
head -c 100000 "$data/valid.txt" > "$out/held_out.txt"
KERAS_BACKEND=torch klm pretrain --preset small --data "$out/train.txt" --run-dir "$out/small" \
  --max-steps "$steps" --seq-len 128 --batch-size 8 --verbose quiet
for backend in tensorflow jax torch; do
  for mode in int8 int4; do
    klm quantize "$out/small" "$out/small-$mode-$backend" --mode "$mode" --backend "$backend" \
      --eval-data "$out/held_out.txt" --speed-tokens 32
  done
done
