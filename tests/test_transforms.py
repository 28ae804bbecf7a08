"""The differentiable batched transform t: exact crop at 32x32, antialiased resize otherwise."""

import torch
import torch.nn.functional as F

from unlearnable_cli.engine import transforms
from unlearnable_cli.engine.transforms import TransformSpec


def test_same_size_draws_are_exact_pad_crop_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    params = transforms.sample_params(TransformSpec(), 2 * 3, (32, 32), (32, 32), g)
    assert isinstance(params, transforms.CropParams)
    out = transforms.apply(x, params)
    padded = F.pad(x, (4, 4, 4, 4))
    for n in range(6):
        t, l = params.top[n].item(), params.left[n].item()
        ref = padded[n % 3, :, t:t + 32, l:l + 32]
        assert torch.equal(out[n], ref.flip(-1) if params.flip[n] else ref)
    assert 0 < params.flip.sum() < 6 and len(set(params.top.tolist())) > 1
    # the gather's gradient is the exact adjoint: each pixel gets the sum over the crops that saw it
    (grad,) = torch.autograd.grad(out.sum(), x)
    seen = torch.zeros(3, 40, 40)
    for n in range(6):
        t, l = params.top[n].item(), params.left[n].item()
        seen[n % 3, t:t + 32, l:l + 32] += 1
    assert torch.equal(grad[:, 0], seen[:, 4:36, 4:36])


def test_crop_equals_the_one_hot_resampling_matrices():
    """The gather fast path and the general matrix path agree on integer draws."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32)
    crop = transforms.sample_params(TransformSpec(), 4, (32, 32), (32, 32), g)
    i = torch.arange(32)
    rows = (i[None, None, :] == crop.top[:, None, None] + i[None, :, None] - 4).float()
    src_col = torch.where(crop.flip[:, None], 31 - i[None, :], i[None, :]) + crop.left[:, None] - 4
    cols = (i[None, None, :] == src_col[:, :, None]).float()
    matrices = transforms.ResampleParams(rows, cols)
    assert torch.allclose(transforms.apply(x, crop), transforms.apply(x, matrices), atol=1e-6)


def test_identity_matches_antialiased_interpolate():
    x = torch.rand(2, 3, 90, 130)
    out = transforms.apply(x, transforms.identity_params(2, (90, 130), (32, 32)))
    ref = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(out, ref, atol=1e-5)
    same = torch.rand(4, 3, 32, 32)
    assert torch.allclose(transforms.apply(same, transforms.identity_params(4, (32, 32), (32, 32))), same, atol=1e-6)


def test_batched_apply_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(1)
    for size in ((50, 70), (32, 32)):
        x = torch.rand(4, 3, *size)
        params = transforms.sample_params(TransformSpec(), 3 * 4, size, (32, 32), g)
        out = transforms.apply(x, params)
        for n in range(12):
            one = type(params)(*[v[n:n + 1] if isinstance(v, torch.Tensor) else v for v in vars(params).values()])
            assert torch.allclose(out[n], transforms.apply(x[n % 4:n % 4 + 1], one)[0], atol=1e-5)


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


def test_grayscale_where_is_the_eval_defense_on_the_chosen_draws_only():
    from unlearnable_cli.evaluate.defenses import grayscale
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    which = torch.tensor([True, False, True, False])
    out = transforms.grayscale_where(x, which)
    assert torch.allclose(out[which], grayscale(x.detach()[which]), atol=1e-6)
    assert torch.equal(out[~which], x[~which])
    out.sum().backward()                       # differentiable: the noise's gradient passes through
    assert torch.allclose(x.grad[0, :, 0, 0], torch.tensor(transforms.LUMA) * 3, atol=1e-6)
