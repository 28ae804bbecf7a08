#!/usr/bin/env bash
# One lease of a GPU, in priority order; each stage under its own time limit, each writing
# bench/results/gpu-<stage>.json (copied to $OUT) as it goes, so a stage cut short still returns
# what it has.  On the device machine (see bench/README.md, "A GPU lease"):
#     bash bench/gpu.sh                       # all three stages, about 9 minutes
# Dry run here, at toy sizes on the CPU:
#     bash bench/gpu.sh --device cpu --toy
set -u
cd "$(dirname "$0")/.."
DEVICE=cuda; TOY=""; TOTAL=540           # seconds for the whole script (a device command may run 600)
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2;;
    --toy) TOY=--toy; TOTAL=240; shift;;
    --seconds) TOTAL=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Packages the device image lacks travel as wheels in .whl/ (bench/README.md says which).
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
OUT=${OUT:-bench/work/gpu/out}; export OUT; mkdir -p "$OUT"
start=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - start) )); }
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } | tee "$OUT/gpu-env.txt"
echo "== 1. CUDA correctness (tests/test_cuda.py)"
timeout 120 $PY bench/gpu.py tests --device "$DEVICE"
echo "== 2. speed against the raw passes"
timeout 90 $PY bench/gpu.py speed --device "$DEVICE" $TOY
echo "== 3. a paper-size SEM generator for the time left"
budget=$(( $(left) - 60 ))                # a minute kept for the export and the split
[ "$budget" -gt 30 ] && timeout $(( budget + 45 )) $PY bench/gpu.py train --device "$DEVICE" $TOY --seconds "$budget"
ls -l "$OUT"
