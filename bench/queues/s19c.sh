#!/bin/bash
# session 19: a second generator with the shipped recipe (cpu preset, M 2100, K 10/1/5) at training seed 1,
# to measure how much of the shipped generator's adv-4/255 ratio (0.87) is that one run's luck.
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=runs/sem-cpu-seed1/sem-resnet18w16-cifar10.safetensors
set -x
date; nice -n 10 /work/venv/bin/unlearnable train-generator ../shared/data/cifar10/train -o $W \
    --method sem --preset cpu --seed 1 --checkpoint-every 25 --quiet --resume
date; nice -n 10 /work/venv/bin/python bench/efficacy.py --generator sem-seed1=$W --conditions adv4 --victims sem-seed1
date
