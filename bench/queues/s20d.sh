#!/bin/bash
# session 20 probe, second point, with the real command: a quarter of the EOT draws in grayscale
# (protect --eot-grayscale 0.25), seed-1 replica first, then the shipped generator; victims standard
# and grayscale as in s20b.sh (quick preset, victim seed 0).
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W1=runs/sem-cpu-seed1/sem-resnet18w16-cifar10.safetensors
W0=weights/sem-resnet18w16-cifar10.safetensors
U=/work/venv/bin/unlearnable
set -x
for pair in "seed1-g25 $W1" "sem-g25 $W0"; do
  set -- $pair; name=$1; w=$2
  date; nice -n 10 $U protect bench/work/cifar10-train-1000pc -o bench/work/protected-$name --weights $w \
    --eot-grayscale 0.25 --quiet
  date; nice -n 10 $U eval --preset quick --clean bench/work/cifar10-train-1000pc --runs protected \
    --protected=$name=bench/work/protected-$name --test ../shared/data/cifar10/test --test-per-class 200 \
    --seed 0 --quiet --adv-radius 0 --defense none --defense grayscale \
    --report bench/results/probes/eval-std-gray-$name.json
done
date
