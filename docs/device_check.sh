#!/usr/bin/env bash
# A check for a CUDA GPU or a Mac (MPS), whose output the README's "Devices" section will quote.
#   bash docs/device_check.sh [DEVICE] > device_check.txt 2>&1      (DEVICE: auto, cuda, cuda:1, mps)
# Run it in the project's venv, from anywhere. It writes only under $OUT (default: device_check/).
#   1. the test suite (it runs on the CPU: it checks this install, not the device);
#   2. bench at batch 64 on DEVICE: float32, --tf32 (CUDA only) and --compile;
#   3. 200 toy iterations with --deterministic, straight and stopped at 100 then resumed, twice
#      each way; then the same without --deterministic. Printed: how far the final weights lie
#      apart (0 means bit for bit).
set -uo pipefail
cd "$(dirname "$0")/.."
dev=${1:-auto}
out=${OUT:-device_check}
iters=${ITERS:-200}         # a resume at half of it; a critic burst at 0 and every 100
mkdir -p "$out"
python -c "import platform, torch, genegan as G
d = G.pick_device('$dev')
print('torch', torch.__version__, '| python', platform.python_version(), '|', platform.platform())
print('device', d, torch.cuda.get_device_name(d) if d.type == 'cuda' else '')"

echo "== 1. tests"
python -m pytest -q -p no:cacheprovider 2>&1 | tail -3

echo "== 2. bench, batch 64, on $dev"
for flags in "" "--tf32" "--compile"; do
    [[ $flags == --tf32 && $dev == mps ]] && continue
    echo "-- bench $flags"
    python genegan.py bench --device "$dev" --batch_size 64 --iters 10 $flags 2>&1 | grep -v Warning
done

echo "== 3. $iters toy iterations, a resume at $((iters / 2))"
[[ -d $out/toy ]] || { python genegan.py toy --out "$out/toy" --num 1000 && \
                       python align.py --data_dir "$out/toy"; } > /dev/null 2>&1
train() {   # EXP MAX_ITER [flags]
    python genegan.py train --data_dir "$out/toy" --device "$dev" --exp_dir "$out/$1" \
        --max_iter "$2" --batch_size 16 --d_burst_every 100 --save_every 100 \
        --sample_every 100 --log_every 20 "${@:3}" 2>&1 | tail -1
}
for det in --deterministic ""; do
    name=${det:-default}; name=${name#--}
    rm -rf "$out/${name}_"*
    train "${name}_straight" "$iters" $det
    train "${name}_straight2" "$iters" $det
    train "${name}_resumed" $((iters / 2)) $det
    train "${name}_resumed" "$iters" $det --resume
    python - "$out" "$name" <<'EOF'
import sys, torch
out, name = sys.argv[1:]
load = lambda run: torch.load(f'{out}/{name}_{run}/model/latest.pt', weights_only=True,
                              map_location='cpu')['model']
a = load('straight')
for run in ('straight2', 'resumed'):
    b = load(run)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f'{name}: straight vs {run}: largest weight difference {diff:.3g}',
          '(bit for bit)' if diff == 0 else '')
EOF
done
