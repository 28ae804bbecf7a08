#!/bin/bash
# session 11 queue (one job at a time, 2 threads): K_u=60 protect, standard-training check of K_u=30/60, K_u=30 at victim seed 1
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
PY="nice /work/venv/bin/python bench/efficacy.py"
W=weights/sem-resnet18w16-cifar10.safetensors
set -x
date; $PY --generator sem-k60=$W --protect-args "sem-k60=--steps 60" --conditions adv4 --victims sem-k60
date; $PY --conditions standard --victims sem-k30,sem-k60 --stage eval
date; $PY --conditions adv4 --victims sem-k30 --seed 1 --stage eval
date
