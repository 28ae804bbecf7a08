#!/bin/bash
# session 13, second part: after s13.sh, error-minimizing noise against the fixed robust
# surrogate itself (step 1 of s13.sh, no SEM training), protect defaults, adv 4/255 then standard.
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
PRE=runs/robust-pre/robust-resnet18w16-cifar10.safetensors
PY="nice /work/venv/bin/python bench/efficacy.py"
while pgrep -f bench/work/s13.sh > /dev/null; do sleep 30; done
set -x
date; $PY --generator robust-pre=$PRE --conditions adv4 --victims robust-pre
date; $PY --generator robust-pre=$PRE --conditions standard --victims robust-pre --stage eval
date
