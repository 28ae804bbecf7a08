"""dlib's face recognition ResNet (``anet_type``) as a differentiable torch module.

Architecture (``examples/dnn_face_recognition_ex.cpp``; layer semantics from
``dlib/dnn/layers.h`` and the CPU kernels of ``dlib/cuda/cpu_dlib.cpp``):

- input ``input_rgb_image_sized<150>``: a 150x150 RGB chip of 8-bit values ``v`` becomes
  ``(v - mean_c) / 256`` per channel (means 122.782, 117.001, 104.298 for R, G, B, stored
  in the file);
- stem: conv 7x7/2 (32 filters, **no padding**: dlib pads only stride-1 layers), affine
  (per-channel ``x * gamma + beta``, batch norm frozen), relu, max pool 3x3/2 (no padding):
  150 -> 72 -> 35;
- 14 residual blocks (:data:`~.dlib_net.BLOCKS`): conv 3x3 (stride 2 and no padding in a
  downsampling block, else stride 1 and padding 1), affine, relu, conv 3x3/1, affine; the
  shortcut is the block's input, through a 2x2/2 average pool in a downsampling block;
  then relu.  dlib's ``add_prev`` adds two tensors of different shapes by zero-padding both
  at the end of every dimension (channels, rows, columns); so does :func:`_add_prev`.
  That matters at every downsampling block: the channel count doubles at 32->64,
  64->128 and 128->256, and the spatial sizes differ twice: at the 128->256 block the
  conv path is 3x3 and the pooled shortcut 4x4 (8 -> 3 vs 8 -> 4), at the last block
  1x1 and 2x2 (4 -> 1 vs 4 -> 2); block outputs are 35, 17, 8, 4 and 2 pixels wide;
- average over all positions, then a 256 -> 128 linear layer without bias.

The output is dlib's raw descriptor, not re-normalised (LFW faces: norm about 1.4),
compared with Euclidean distance (face_recognition's match threshold is 0.6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dlib_net import BLOCKS, CHIP_SIZE, EMBEDDING, STEM_FILTERS, FaceNetFile

#: dlib's input means (R, G, B) on the 0..255 scale, as stored in the released file.
DLIB_MEANS = (122.782, 117.001, 104.298)


class Affine(nn.Module):
    """dlib's ``affine_`` in CONV_MODE: ``x * gamma[c] + beta[c]`` (frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` as dlib's ``add_prev`` does it: both zero-padded at the end of (C, H, W)."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))
    return pad(a) + pad(b)


class Block(nn.Module):
    """One ``ares`` (or ``ares_down``) block: relu(add_prev(conv path, shortcut))."""

    def __init__(self, inputs: int, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(inputs, channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(y, shortcut))


class DlibFaceNet(nn.Module):
    """The 128-d face descriptor of dlib's ``dlib_face_recognition_resnet_model_v1``.

    ``forward(chips)``: ``chips`` is (N, 3, 150, 150), RGB, values in [0, 1] meaning the
    8-bit chip divided by 255 (dlib sees ``round(255 * x)``; the port computes on
    ``255 * x`` unrounded, so it is exact on 8-bit inputs and smooth between them).
    Returns (N, 128) float32 descriptors.  Build it with :func:`~.weights.load_face_net`.
    """

    def __init__(self, means: tuple[float, float, float] = DLIB_MEANS) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.ModuleDict({"conv": nn.Conv2d(3, STEM_FILTERS, 7, stride=2),
                                   "affine": Affine(STEM_FILTERS)})
        blocks, width = [], STEM_FILTERS
        for channels, down in BLOCKS:
            blocks.append(Block(width, channels, down))
            width = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, EMBEDDING, bias=False)

    def normalize(self, chips: torch.Tensor) -> torch.Tensor:
        """[0, 1] chips -> dlib's input tensor ``(255 x - mean) / 256``."""
        if chips.ndim != 4 or chips.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected chips of shape (N, 3, {CHIP_SIZE}, {CHIP_SIZE}), got {tuple(chips.shape)}")
        return (chips * 255.0 - self.means) / 256.0

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.normalize(chips)
        x = F.max_pool2d(F.relu(self.stem["affine"](self.stem["conv"](x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], means: tuple[float, float, float]) -> "DlibFaceNet":
        """A frozen net (eval mode) with every tensor of the file; refuses missing or extra names."""
        net = cls(means)
        net.load_state_dict({**tensors, "means": net.means}, strict=True)
        net.eval().requires_grad_(False)
        return net

    @classmethod
    def from_file(cls, parsed: FaceNetFile) -> "DlibFaceNet":
        return cls.from_tensors({k: torch.from_numpy(v) for k, v in parsed.tensors.items()}, parsed.means)
