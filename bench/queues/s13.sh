#!/bin/bash
# session 13 queue (one job at a time, 2 threads): a robust-pretrained surrogate, then SEM.
# 1) adversarial training on clean CIFAR-10 (rho_a 4/255, K_a 5): SEM with a vanishing noise
#    budget (radius 0.01 levels, K_u 1), i.e. Madry training of the width-16 ResNet-18;
# 2) SEM (cpu preset K's) fine-tuned from it for 900 steps at lr 0.05 (x0.1 at 40%/80%);
# 3) protect the 10k subset with it and evaluate (adv 4/255, then standard).
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
PRE=runs/robust-pre/robust-resnet18w16-cifar10.safetensors
RP=runs/sem-rp/sem-resnet18w16-cifar10.safetensors
PY="nice /work/venv/bin/python bench/efficacy.py"
set -x
date; nice /work/venv/bin/unlearnable train-generator ../shared/data/cifar10/train -o $PRE \
    --method sem --preset cpu --radius 0.01 --noise-steps 1 --steps 1200 --checkpoint-every 25 --quiet --resume
date; nice /work/venv/bin/unlearnable train-generator ../shared/data/cifar10/train -o $RP \
    --method sem --preset cpu --init $PRE --steps 900 --lr 0.05 --checkpoint-every 25 --quiet --resume
date; $PY --generator sem-rp=$RP --conditions adv4 --victims sem-rp
date; $PY --generator sem-rp=$RP --conditions standard --victims sem-rp --stage eval
date
