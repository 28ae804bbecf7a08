#!/bin/bash
# session 19 probe 2: shipped SEM generator, REM-style worst-case δʳ at protect time (K_u 10, J 1, K_a 5), adv 4/255 eval
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
set -x
date
nice -n 10 /work/venv/bin/python bench/work/rem_protect_probe.py bench/work/protected-semrem 10 1 \
  weights/sem-resnet18w16-cifar10.safetensors
date
nice -n 10 /work/venv/bin/python -m unlearnable_cli eval --preset quick --clean bench/work/cifar10-train-1000pc \
  --runs protected --protected=semrem=bench/work/protected-semrem --test ../shared/data/cifar10/test \
  --test-per-class 200 --adv-radius 4 --seed 0 --report bench/work/eval-adv4-semrem.json --quiet
date
