#!/bin/bash
# session 18: the paper-K's width-16 SEM generator with the stronger protect setting (K_u 30), adv 4/255
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=runs/sem-paper-w16/sem-resnet18w16-paper-cifar10.safetensors
set -x
date; nice -n 10 /work/venv/bin/python bench/efficacy.py --generator sem-paper-k30=$W \
    --protect-args "sem-paper-k30=--steps 30" --conditions adv4 --victims sem-paper-k30
date
