#!/bin/bash
# session 12 queue (one job at a time, 2 threads): fine-tune the shipped SEM generator for
# 1000 more steps (lr 0.01, x0.1 at 40%/80%), then protect the 10k subset and evaluate it.
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=weights/sem-resnet18w16-cifar10.safetensors
FT=runs/sem-ft1000/sem-resnet18w16-cifar10.safetensors
PY="nice /work/venv/bin/python bench/efficacy.py"
set -x
date; nice /work/venv/bin/unlearnable train-generator ../shared/data/cifar10/train -o $FT \
    --method sem --preset cpu --init $W --steps 1000 --lr 0.01 --checkpoint-every 25 --quiet --resume
date; $PY --generator sem-ft=$FT --conditions adv4 --victims sem-ft
date; $PY --generator sem-ft=$FT --conditions standard --victims sem-ft --stage eval
date
