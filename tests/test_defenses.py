"""Each countermeasure does what it must."""

import pytest
import torch

from unlearnable_cli.evaluate import defenses
from unlearnable_cli.evaluate.defenses import BatchDefense, Defense, DefenseError, parse


def test_parse_values_and_errors():
    assert parse("jpeg") == Defense("jpeg", 10) and parse("JPEG:30") == Defense("jpeg", 30)
    assert parse("median:5").arg == 5 and parse("ueraser-lite").arg is None
    for bad, message in [("blur", "unknown defense"), ("jpeg:0", "1..100"), ("median:4", "odd"),
                         ("cutout:3", "takes no argument"), ("mean:x", "integer")]:
        with pytest.raises(DefenseError, match=message):
            parse(bad)


def test_grayscale_gives_equal_channels():
    x = torch.rand(4, 3, 32, 32)
    g = defenses.apply_once(parse("grayscale"), x)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    assert not torch.equal(g[:, 0], x[:, 0])


def test_jpeg_changes_pixels_and_lower_quality_changes_more():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    q10 = (defenses.apply_once(parse("jpeg:10"), x) - x).abs().mean()
    q90 = (defenses.apply_once(parse("jpeg:90"), x) - x).abs().mean()
    assert q10 > q90 > 0


def test_median_removes_salt_noise():
    x = torch.full((1, 3, 32, 32), 0.5)
    noisy = x.clone()
    noisy[..., 5, 7] = 1.0
    noisy[..., 20, 11] = 0.0
    assert torch.allclose(defenses.apply_once(parse("median:3"), noisy), x)
    blurred = defenses.apply_once(parse("mean:3"), noisy)
    assert (blurred - x).abs().max() > 0.01                # a mean filter only spreads it
    assert torch.allclose(defenses.apply_once(parse("gaussian:3"), x), x, atol=1e-6)


def test_batch_defenses_shapes_labels_and_determinism():
    x = torch.rand(8, 3, 32, 32)
    y = torch.arange(8)
    for name in ("cutout", "mixup", "cutmix", "ueraser-lite"):
        d = BatchDefense(parse(name))
        a = d(x, y, torch.Generator().manual_seed(1))
        b = d(x, y, torch.Generator().manual_seed(1))
        assert a.images.shape == x.shape and torch.equal(a.images, b.images), name
        assert ((a.lam >= 0) & (a.lam <= 1)).all()
        assert not torch.equal(a.images, x), f"{name} left the batch unchanged"
    cut = BatchDefense(parse("cutout"))(x, y, torch.Generator().manual_seed(2))
    zero_fraction = (cut.images == 0).float().mean()
    assert 0.1 < zero_fraction < 0.3                      # a quarter of each image, minus clipping at borders
    mixed = BatchDefense(parse("mixup"))(x, y, torch.Generator().manual_seed(3))
    logits = torch.randn(8, 8)
    manual = (mixed.lam * torch.nn.functional.cross_entropy(logits, y, reduction="none")
              + (1 - mixed.lam) * torch.nn.functional.cross_entropy(logits, mixed.labels_b, reduction="none")).mean()
    assert torch.allclose(mixed.loss(logits), manual)
