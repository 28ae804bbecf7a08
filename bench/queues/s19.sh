#!/bin/bash
# session 19 probe: logit-averaging ensemble of three SEM generators at protect time, then adv 4/255 eval
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
set -x
date
nice -n 10 /work/venv/bin/python bench/work/ensemble_probe.py bench/work/protected-ens3 10 \
  weights/sem-resnet18w16-cifar10.safetensors runs/sem-paper-w16/sem-resnet18w16-paper-cifar10.safetensors \
  runs/sem-rp/sem-resnet18w16-cifar10.safetensors
date
nice -n 10 /work/venv/bin/python -m unlearnable_cli eval --preset quick --clean bench/work/cifar10-train-1000pc \
  --runs protected --protected=ens3=bench/work/protected-ens3 --test ../shared/data/cifar10/test \
  --test-per-class 200 --adv-radius 4 --seed 0 --report bench/work/eval-adv4-ens3.json --quiet
date
