#!/bin/bash
# session 20 probe: half of the EOT draws in grayscale at protect time (grayscale_draws 0.5,
# K_u 10, J 5 otherwise the defaults), with the shipped generator and with the seed-1 replica;
# victims as in the efficacy benchmark (quick preset, seed 0): standard and grayscale, then adv 4/255.
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W1=runs/sem-cpu-seed1/sem-resnet18w16-cifar10.safetensors
evalp() {  # NAME DIR extra eval args...
  name=$1; dir=$2; shift 2
  nice -n 10 /work/venv/bin/python -m unlearnable_cli eval --preset quick --clean bench/work/cifar10-train-1000pc \
    --runs protected --protected=$name=$dir --test ../shared/data/cifar10/test \
    --test-per-class 200 --seed 0 --quiet "$@"
}
set -x
date; nice -n 10 /work/venv/bin/python bench/probes/grayscale_eot_probe.py bench/work/protected-sem-g50 0.5 \
  weights/sem-resnet18w16-cifar10.safetensors
date; evalp sem-g50 bench/work/protected-sem-g50 --adv-radius 0 --defense none --defense grayscale \
  --report bench/results/probes/eval-std-gray-sem-g50.json
date; nice -n 10 /work/venv/bin/python bench/probes/grayscale_eot_probe.py bench/work/protected-seed1-g50 0.5 $W1
date; evalp seed1-g50 bench/work/protected-seed1-g50 --adv-radius 0 --defense none --defense grayscale \
  --report bench/results/probes/eval-std-gray-seed1-g50.json
date; evalp sem-g50 bench/work/protected-sem-g50 --adv-radius 4 --report bench/results/probes/eval-adv4-sem-g50.json
date
