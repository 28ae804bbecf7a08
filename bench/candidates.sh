#!/bin/bash
# Compare generator / protect-option candidates cheaply on the 2,000-image ablation subset.
#
#   bash bench/candidates.sh NAME [protect options...]
#   e.g. bash bench/candidates.sh s300 --weights runs/cand-s300/sem-s300.safetensors
#        bash bench/candidates.sh rr8 --random-radius 8
#
# Protects bench/work/ablation/clean-200 (the first 200 images per class of the efficacy
# subset) with the real `protect` command, then trains protected-only quick victims
# (standard, and adversarial training at 4/255) against 2,000 clean test images. The
# clean-trained baselines for the same subset, seed and recipe are in
# results/ablation_random_radius_2k.json (42.75% standard, 30.2% adv 4/255).
# Reports: bench/work/cand/{std,adv4}-NAME.json; summary: python bench/candidates_summary.py
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=$1; shift
WORK=$ROOT/bench/work/cand
mkdir -p "$WORK"   # outputs go there; relative paths in the options stay relative to the caller
U="nice -n 5 ${UNLEARNABLE:-unlearnable}"   # set UNLEARNABLE to use another install
T=$ROOT/../shared/data/cifar10/test
C=$ROOT/bench/work/ablation/clean-200
if [ ! -d "$C" ]; then   # the first 200 images (sorted names) of every class, as bench/efficacy.py selects
    for d in "$ROOT"/../shared/data/cifar10/train/*/; do
        mkdir -p "$C/$(basename "$d")"
        ls "$d" | sort | head -200 | while read -r f; do cp "$d/$f" "$C/$(basename "$d")/"; done
    done
fi
echo "start $NAME $(date +%s)"
$U protect "$C" -o "$WORK/prot-$NAME" --quiet "$@"; echo "protect $NAME $(date +%s)"
$U eval --preset quick --clean "$C" --protected "$NAME=$WORK/prot-$NAME" --test "$T" --test-per-class 200 \
    --runs protected --report "$WORK/std-$NAME.json" --quiet; echo "std $NAME $(date +%s)"
$U eval --preset quick --clean "$C" --protected "$NAME=$WORK/prot-$NAME" --test "$T" --test-per-class 200 \
    --runs protected --adv-radius 4 --report "$WORK/adv4-$NAME.json" --quiet; echo "adv4 $NAME $(date +%s)"
