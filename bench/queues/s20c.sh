#!/bin/bash
# INVALID RUN, kept as it ran: by the time it started, Protector passed grayscale_draws from
# ProtectConfig explicitly, which overrode the probe script's patched default, so the
# "0.25" protect was a plain default one (its 10,000 PNGs were byte-identical to the
# session-19 protect of the same generator, and its victim to the benchmark's). Its outputs
# were deleted; s20d.sh reran this point with the real `protect --eot-grayscale 0.25`.
# session 20 probe, second point: a quarter of the EOT draws in grayscale (--eot-grayscale 0.25),
# seed-1 replica first, then the shipped generator; victims standard and grayscale, as in s20b.sh.
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
date; nice -n 10 /work/venv/bin/python bench/probes/grayscale_eot_probe.py bench/work/protected-seed1-g25 0.25 $W1
date; evalp seed1-g25 bench/work/protected-seed1-g25 --adv-radius 0 --defense none --defense grayscale \
  --report bench/results/probes/eval-std-gray-seed1-g25.json
date; nice -n 10 /work/venv/bin/python bench/probes/grayscale_eot_probe.py bench/work/protected-sem-g25 0.25 \
  weights/sem-resnet18w16-cifar10.safetensors
date; evalp sem-g25 bench/work/protected-sem-g25 --adv-radius 0 --defense none --defense grayscale \
  --report bench/results/probes/eval-std-gray-sem-g25.json
date
