#!/usr/bin/env bash
# genegan.py bench in float32 and with --bf16 (64x64, batch 16) with the vector instructions that
# oneDNN and ATen may use capped below the CPU's own: a stand-in, on a CPU with AVX512_BF16 and
# AMX, for CPUs without native bf16. Under the AVX2 cap PyTorch sees no bf16 in oneDNN and runs
# bf16 convolutions in its own kernels, as on an AVX2 CPU; that bench (about 17 minutes) runs in
# alternation 1 only. Alternately, in one sitting on one quiet machine. Usage (from the
# repository root; see README.md in this folder), the alternations to run as numbers:
#   docs/curves/bench_bf16_isa.sh PORT_PYTHON 1 2 > bench_bf16_isa.txt
set -euo pipefail
port_py=$1
shift
echo "# $(date -u +%F) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "# flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
for rep in "$@"; do
  # ONEDNN_MAX_CPU_ISA ATEN_CPU_CAPABILITY
  for cap in "DEFAULT default" "AVX512_CORE avx512" "AVX2 avx2"; do
    set -- $cap
    for precision in "" --bf16; do
      [ "$1$precision" = AVX2--bf16 ] && [ "$rep" != 1 ] && continue
      echo "## rep $rep oneDNN $1 ATen $2 ${precision:-float32}"
      ONEDNN_MAX_CPU_ISA=$1 ATEN_CPU_CAPABILITY=$2 "$port_py" genegan.py bench --batch_size 16 \
        --iters 3 $precision 2>&1 | grep -E 'native|train iteration'
      # the convolution kernels oneDNN ran under this cap (batch 2, one iteration); none: ATen's
      ONEDNN_MAX_CPU_ISA=$1 ATEN_CPU_CAPABILITY=$2 ONEDNN_VERBOSE=1 "$port_py" genegan.py bench \
        --batch_size 2 --iters 1 $precision 2>&1 | { grep -E '^onednn_verbose.*,exec,.*convolution' \
        || echo 'none'; } | cut -d, -f6,7 | sort | uniq -c | sort -rn | head -3
    done
  done
done
