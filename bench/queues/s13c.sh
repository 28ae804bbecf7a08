#!/bin/bash
# session 13 on (resumed across sessions): the paper's SEM recipe (M 5000, K_u 10, J 5, K_a 10)
# at width 16, the one generator lever not yet tried; about 11 s per step here, ~15 h in all.
# Between sessions its checkpoint and log are kept in bench/runs/sem-paper-w16/; to continue:
#   mkdir -p runs/sem-paper-w16 && cp bench/runs/sem-paper-w16/* runs/sem-paper-w16/
# Stop with SIGTERM (it writes a checkpoint first).
cd /work/main
export OMP_NUM_THREADS=${THREADS:-2} MKL_NUM_THREADS=${THREADS:-2}
set -x
date; nice -n 10 /work/venv/bin/unlearnable train-generator ../shared/data/cifar10/train \
    -o runs/sem-paper-w16/sem-resnet18w16-paper-cifar10.safetensors \
    --method sem --preset paper --width 16 --checkpoint-every 10 --quiet --resume
date
