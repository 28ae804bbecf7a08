#!/bin/bash
# session 12, second part: after s12.sh, the fine-tuned generator with protect --steps 30 (adv 4/255).
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
FT=runs/sem-ft1000/sem-resnet18w16-cifar10.safetensors
PY="nice /work/venv/bin/python bench/efficacy.py"
while pgrep -f bench/work/s12.sh > /dev/null; do sleep 30; done
set -x
date; $PY --generator sem-ft-k30=$FT --protect-args "sem-ft-k30=--steps 30" --conditions adv4 --victims sem-ft-k30
date
