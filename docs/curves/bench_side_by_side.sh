#!/usr/bin/env bash
# genegan.py bench and the official graph (tf_bench.py), alternately, batch 16 and 64, in one
# sitting on one quiet machine. Usage (from the repository root; see README.md in this folder):
#   docs/curves/bench_side_by_side.sh PORT_PYTHON TF_PYTHON OFFICIAL_CHECKOUT REPS > bench.txt
set -euo pipefail
port_py=$1 tf_py=$2 official=$3 reps=${4:-3}
echo "# $(date -u +%F) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for rep in $(seq "$reps"); do
  for bs in 16 64; do
    echo "## rep $rep batch $bs"
    "$port_py" genegan.py bench --batch_size "$bs" --iters 3 | grep -E 'device|train iteration'
    "$tf_py" docs/curves/tf_bench.py --official "$official" --batch_size "$bs" --iters 3 2>/dev/null
  done
done
