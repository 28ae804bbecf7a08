"""The differentiable batched transform t: exact crop at 32x32, antialiased resize otherwise."""

import torch
import torch.nn.functional as F

from unlearnable_cli import transforms
from unlearnable_cli.transforms import TransformSpec


def reference_crop(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor | None:
    """Find the pad-4 crop (+ optional flip) of x that the one-hot matrices represent."""
    padded = F.pad(x, (4, 4, 4, 4))
    for dy in range(9):
        for dx in range(9):
            for flip in (False, True):
                crop = padded[:, dy:dy + 32, dx:dx + 32]
                crop = crop.flip(-1) if flip else crop
                if torch.equal(torch.einsum("oh,chw,pw->cop", rows, x, cols), crop):
                    return crop
    return None


def test_same_size_draws_are_exact_pad_crop_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    params = transforms.sample_params(TransformSpec(), 2 * 3, (32, 32), (32, 32), g)
    out = transforms.apply(x, params)
    flips = 0
    for n in range(6):
        ref = reference_crop(x[n % 3], params.rows[n], params.cols[n])
        assert ref is not None, f"draw {n} is not a pad-4 crop"
        assert torch.allclose(out[n], ref, atol=1e-6)
        flips += bool(params.cols[n][0, :].argmax() > params.cols[n][-1, :].argmax())
    # rows of a flipped draw run backwards; with 6 draws both kinds are expected for this seed
    assert 0 < flips < 6


def test_identity_matches_antialiased_interpolate():
    x = torch.rand(2, 3, 90, 130)
    out = transforms.apply(x, transforms.identity_params(2, (90, 130), (32, 32)))
    ref = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(out, ref, atol=1e-5)
    same = torch.rand(4, 3, 32, 32)
    assert torch.allclose(transforms.apply(same, transforms.identity_params(4, (32, 32), (32, 32))), same, atol=1e-6)


def test_batched_apply_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 50, 70)
    params = transforms.sample_params(TransformSpec(), 3 * 4, (50, 70), (32, 32), g)
    out = transforms.apply(x, params)
    for n in range(12):
        single = transforms.ResampleParams(params.rows[n:n + 1], params.cols[n:n + 1])
        assert torch.allclose(out[n], transforms.apply(x[n % 4:n % 4 + 1], single)[0], atol=1e-5)


def test_gradient_reaches_every_full_resolution_pixel_and_is_not_blocky():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 300, 400, requires_grad=True)
    total = torch.zeros_like(x)
    for _ in range(4):  # a few optimization steps' worth of draws
        params = transforms.sample_params(TransformSpec(), 5, (300, 400), (32, 32), g)
        (grad,) = torch.autograd.grad(transforms.apply(x, params).square().sum(), x)
        total += grad.abs()
    assert (total > 0).all(), "some full-resolution pixels never receive a gradient"
    # Low-resolution noise upsampled would be constant over ~9x12 blocks; the random
    # windows make neighbouring full-resolution gradients differ almost everywhere.
    assert (total[..., :, 1:] != total[..., :, :-1]).float().mean() > 0.9


def test_scale_and_shift_stay_within_the_spec():
    g = torch.Generator().manual_seed(3)
    p = transforms.sample_params(TransformSpec(pad=4, min_scale=0.8), 200, (320, 320), (32, 32), g)
    sums = p.rows.sum(-1)
    # weights are an average (sum 1) where the window is inside the image, less where it leaves it
    assert sums.max() <= 1 + 1e-5 and sums.min() >= 0
    inside = (p.rows[..., 0] == 0) & (p.rows[..., -1] == 0) & (sums > 0)   # not touching the border
    assert torch.allclose(sums[inside], torch.ones_like(sums[inside]), atol=1e-5)
    # the visible window covers at least 0.8 of the side minus the largest shift (4/32 of 320)
    spans = (p.rows > 0).any(1).sum(-1)
    assert spans.min() >= 0.8 * 320 - 40 and spans.max() <= 320
