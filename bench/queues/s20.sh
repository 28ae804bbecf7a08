#!/bin/bash
# session 20: the seed-1 replica of the shipped recipe (session 19, 1.03 at adv 4/255) under
# standard training and the filters, to see whether the standard-training target (<= 0.20,
# shipped 0.14) carries over to another training seed. The protected subset already exists
# from s19c.sh, so the protect stage skips every image.
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=runs/sem-cpu-seed1/sem-resnet18w16-cifar10.safetensors
set -x
date; nice -n 10 /work/venv/bin/python bench/efficacy.py --generator sem-seed1=$W --conditions standard,filters --victims sem-seed1
date
