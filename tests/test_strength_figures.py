"""The figures ``--strength`` prints (``config/protect.py``, ``STRENGTHS``) are the committed
benchmark results: each level's protection ratio and interval from ``bench/results/faces.json``
and its mean SSIM from ``bench/results/photos.json``, so a rerun that moves a figure fails here
until the printed text follows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from unlearnable_cli.config.protect import STRENGTHS, Strength
from unlearnable_cli.metrics import ratio_interval

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
#: level -> (its protection's name in faces.json, its variant's name in photos.json)
MEASURED_AS = {Strength.HIGH: ("faces", "faces"), Strength.MEDIUM: ("faces-tex", "faces-texture"),
               Strength.LOW: ("faces-th16", "faces-texture+highpass16")}


def records(suite: str) -> dict[str, dict]:
    return {r["key"]: r["results"] for r in json.loads((RESULTS / f"{suite}.json").read_text())["records"]}


def test_every_level_names_its_benchmark_records():
    assert set(MEASURED_AS) == set(STRENGTHS)


@pytest.mark.parametrize("level", list(Strength))
def test_the_printed_protection_is_the_faces_benchmark(level: Strength):
    faces = records("faces")
    clean = faces["eval-none-64-standard-clean"]
    protected = faces[f"eval-none-64-standard-{MEASURED_AS[level][0]}"]
    n = protected["settings"]["test_images"]
    assert n == clean["settings"]["test_images"] == 136
    c, p = clean["runs"][0]["final_acc"], protected["runs"][0]["final_acc"]
    lo, hi = ratio_interval(p / 100 * n, n, c / 100 * n, n)
    assert f"faces {p / c:.2f} of clean [{lo:.2f}-{hi:.2f}]" in STRENGTHS[level].measured


@pytest.mark.parametrize("level", list(Strength))
def test_the_printed_ssim_is_the_photos_benchmark(level: Strength):
    photos = records("photos")
    printed = re.search(r"SSIM (\d\.\d+) / (\d\.\d+)", STRENGTHS[level].measured)
    assert printed, STRENGTHS[level].measured
    for text, photo_set in zip(printed.groups(), ("lfw50", "examples")):
        mean = photos[f"visibility-{MEASURED_AS[level][1]}-{photo_set}"]["ssim"]["mean"]
        decimals = len(text.split(".")[1])
        assert float(text) == round(mean, decimals), (level, photo_set, mean)
