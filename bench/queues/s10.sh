#!/bin/bash
# session 10 queue (one job at a time, 2 threads): victim-seed spread at adv 4/255, then K_u=30 protect
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
PY="nice /work/venv/bin/python bench/efficacy.py"
W=weights/sem-resnet18w16-cifar10.safetensors
set -x
date; $PY --generator sem=$W --stage protect
date; $PY --generator sem=$W --conditions adv4 --victims sem,em,clean --seed 1 --stage eval
date; $PY --generator sem-k30=$W --protect-args "sem-k30=--steps 30" --conditions adv4 --victims sem-k30
date; $PY --conditions adv4 --victims rem --seed 1 --stage eval
date
