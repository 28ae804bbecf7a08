#!/bin/bash
# session 18: efficacy of the paper-K's width-16 SEM generator (M 5000), adv 4/255 then standard
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=runs/sem-paper-w16/sem-resnet18w16-paper-cifar10.safetensors
set -x
date; nice -n 10 /work/venv/bin/python bench/efficacy.py --generator sem-paper=$W --conditions adv4 --victims sem-paper
date; nice -n 10 /work/venv/bin/python bench/efficacy.py --generator sem-paper=$W --conditions standard --victims sem-paper --stage eval
date
