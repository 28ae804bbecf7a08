"""Label assignment: folders (optimal distinct classes), predict, fixed class."""

import itertools

import numpy as np
import pytest
import torch

from unlearnable_cli.protect.labels import LabelError, assign_groups, assign_labels

CLASSES = ["a", "b", "c", "d"]


def test_folders_get_distinct_optimal_classes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random((3, 4))
        got, reused = assign_groups(p)
        assert not reused and len(set(got)) == 3
        best = max(sum(p[g, c] for g, c in enumerate(perm)) for perm in itertools.permutations(range(4), 3))
        assert np.isclose(sum(p[g, c] for g, c in enumerate(got)), best)


def test_images_in_a_folder_share_the_class_of_the_group_mean():
    probs = torch.tensor([[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0],     # group x: mostly a
                          [0.7, 0.3, 0, 0], [0.8, 0.2, 0, 0]])   # group y: also a, but less
    out = assign_labels("folders", probs, ["x", "x", "y", "y"], CLASSES)
    assert out.labels[0] == out.labels[1] and out.labels[2] == out.labels[3]
    assert out.labels[0] != out.labels[2]
    assert not out.warnings


def test_more_folders_than_classes_reuses_with_warning():
    probs = torch.rand(10, 4)
    groups = [f"g{i}" for i in range(10)]
    out = assign_labels("folders", probs, groups, CLASSES)
    assert set(out.labels) == set(range(4))
    assert out.warnings and "share a class" in out.warnings[0]


def test_predict_and_fixed_class_and_bad_mode():
    probs = torch.tensor([[0.1, 0.7, 0.1, 0.1], [0.0, 0.0, 0.2, 0.8]])
    assert assign_labels("predict", probs, ["x", "x"], CLASSES).labels == [1, 3]
    assert assign_labels("c", probs, ["x", "y"], CLASSES).labels == [2, 2]
    with pytest.raises(ValueError, match="not .folders., .names., .predict. or a class"):
        assign_labels("zebra", probs, ["x", "y"], CLASSES)


def test_names_mode_uses_folder_names_and_rejects_unknown_folders():
    probs = torch.tensor([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]])
    # folders mode would give "sub/d" class a (it is the likelier one); names mode follows the name
    assert assign_labels("names", probs, ["sub/d", "sub/d", "b"], CLASSES).labels == [3, 3, 1]
    with pytest.raises(LabelError, match="'zebra'.*not named after a class"):
        assign_labels("names", probs, ["a", "zebra", "b"], CLASSES)
    with pytest.raises(LabelError, match="top folder"):
        assign_labels("names", probs, [".", "a", "b"], CLASSES)
