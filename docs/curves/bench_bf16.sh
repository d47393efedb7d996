#!/usr/bin/env bash
# genegan.py bench in float32 and with --bf16 at 64x64 and 128x128, and the official graph
# (tf_bench.py, 64x64: its only size), alternately, batch 16 and 64, in one sitting on one quiet
# machine. Usage (from the repository root; see README.md in this folder):
#   docs/curves/bench_bf16.sh PORT_PYTHON TF_PYTHON OFFICIAL_CHECKOUT REPS > bench_bf16.txt
set -euo pipefail
port_py=$1 tf_py=$2 official=$3 reps=${4:-2}
echo "# $(date -u +%F) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "# flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
for rep in $(seq "$reps"); do
  for bs in 16 64; do
    for size in 64 128; do
      for precision in "" --bf16; do
        echo "## rep $rep batch $bs ${size}x${size} ${precision:-float32}"
        "$port_py" genegan.py bench --batch_size "$bs" --img_size "$size" --iters 3 $precision 2>&1 \
          | grep -E 'native|train iteration'
      done
    done
    echo "## rep $rep batch $bs 64x64 official graph (float32)"
    "$tf_py" docs/curves/tf_bench.py --official "$official" --batch_size "$bs" --iters 3 2>/dev/null
  done
done
