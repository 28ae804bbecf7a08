#!/bin/bash
# session 18: measured cost of one paper-K's SEM step at width 64 (the paper's) vs width 16, back to back
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
set -x
date; /work/venv/bin/python bench/train_speed.py --ks 10 5 10 --width 16 --reps 2 --rem-reps 0 --out bench/results/train_speed_paper_w16.json
date; /work/venv/bin/python bench/train_speed.py --ks 10 5 10 --width 64 --reps 2 --rem-reps 0 --out bench/results/train_speed_paper_w64.json
date
