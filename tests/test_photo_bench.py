"""The photo benchmark's LFW-10 split (bench/photos.py): deterministic, disjoint, capped."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import subsets as photos                        # bench/subsets.py (bench/ is on pytest's pythonpath)
from conftest import SHARED_DATA


def fake_lfw(root: Path, counts: dict[str, int]) -> Path:
    for person, n in counts.items():
        (root / person).mkdir(parents=True)
        names = [f"{person}_{i:04d}.jpg" for i in range(1, n + 1)]
        random.Random(n).shuffle(names)                # creation order is not the split's order
        for name in names:
            (root / person / name).write_bytes(b"")
    (root / ".hidden").mkdir()
    return root


def test_split_is_deterministic_disjoint_and_capped(tmp_path: Path):
    counts = {f"p{i:02d}": n for i, n in enumerate([300, 150, 130, 121, 100, 80, 70, 60, 55, 53, 53, 12])}
    lfw = fake_lfw(tmp_path / "lfw", counts)
    split = photos.lfw10_split(lfw, seed=0)
    assert split == photos.lfw10_split(lfw, seed=0)
    assert split != photos.lfw10_split(lfw, seed=1)
    assert sorted(split["train"]) == sorted(split["test"]) and len(split["train"]) == 10
    assert "p11" not in split["train"] and "p10" not in split["train"]    # 53 twice: ties go by name
    for person, train in split["train"].items():
        test = split["test"][person]
        assert not set(train) & set(test), person
        chosen = min(counts[person], 120)
        assert len(train) + len(test) == chosen and len(train) == round(0.85 * chosen)
    dest = photos.materialize(split, tmp_path / "work")
    on_disk = {p.name for p in (dest / "test").rglob("*.jpg")}
    assert not on_disk & {p.name for p in (dest / "train").rglob("*.jpg")}
    assert all(p.is_symlink() for p in (dest / "train").rglob("*.jpg"))


@pytest.mark.shared_data
def test_real_lfw_split_keeps_test_photos_out_of_training():
    split = photos.lfw10_split(SHARED_DATA / "lfw")
    assert len(split["train"]) == 10 and "George_W_Bush" in split["train"]
    train = {f for files in split["train"].values() for f in files}
    test = {f for files in split["test"].values() for f in files}
    assert not train & test and len(train) + len(test) == 905
