"""Walk dlib's ``dlib_face_recognition_resnet_model_v1.dat`` into named float32 arrays.

The file is ``dlib::serialize`` of the whole ``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp``: a ``loss_metric`` over nested ``add_layer`` /
``add_tag_layer`` / ``add_skip_layer`` objects.  dlib writes them from the outside in
(``dlib/dnn/core.h``): a loss layer writes its version (1), its details, then its
subnetwork; an ``add_layer`` (version 2) writes its version, **then its subnetwork**, then
its layer details and state (three bools, ``x_grad``, ``cached_output``, ``params_grad``);
tag and skip layers (version 1) write only their subnetwork; the innermost ``add_layer``
(version 2 or 3, over the input layer) writes the input layer, its details and state
(three bools, ``x_grad``, ``cached_output``, ``grad_final``, and from version 3 the sample
expansion factor).  So the stream is: all headers outside-in, the input layer, then every
layer's details inside-out, which is the forward order.  The headers carry no type, so
the walk follows the known architecture (:data:`BLOCKS`) and checks every version string,
kernel size, stride, padding and tensor shape on the way; :func:`read_face_net` insists
that the walk ends exactly at the file's last byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dlib_format import DlibReader

#: The residual blocks in forward order: (channels, downsampling).  alevel4 (3 x 32),
#: alevel3 (down 64 + 3 x 64), alevel2 (down 128 + 2 x 128), alevel1 (down 256 + 2 x 256),
#: alevel0 (down 256).
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)
STEM_FILTERS, EMBEDDING = 32, 128
CHIP_SIZE = 150


@dataclass(frozen=True)
class Layer:
    """One ``add_layer`` as the architecture expects it (``kind``: con, affine, relu,
    max_pool, avg_pool, add_prev, fc; ``name``: prefix of its tensors)."""

    kind: str
    name: str = ""
    filters: int = 0
    kernel: int = 0
    stride: int = 1


@dataclass
class FaceNetFile:
    """What the .dat holds: named tensors (torch layouts) and the input layer's means."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    means: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loss: dict[str, float] = field(default_factory=dict)


def forward_layers() -> list[Layer | str]:
    """The layers (and ``"tag"``/``"skip"`` markers) in forward order, stem first."""
    seq: list[Layer | str] = [Layer("con", "stem.conv", STEM_FILTERS, 7, 2), Layer("affine", "stem.affine"),
                              Layer("relu"), Layer("max_pool", kernel=3, stride=2)]
    width = STEM_FILTERS
    for i, (channels, down) in enumerate(BLOCKS):
        p = f"blocks.{i}"
        seq += ["tag", Layer("con", f"{p}.conv1", channels, 3, 2 if down else 1), Layer("affine", f"{p}.affine1"),
                Layer("relu"), Layer("con", f"{p}.conv2", channels, 3, 1), Layer("affine", f"{p}.affine2")]
        if down:
            seq += ["tag", "skip", Layer("avg_pool", kernel=2, stride=2)]
        seq += [Layer("add_prev"), Layer("relu")]
        width = channels
    assert width == 256
    return seq + [Layer("avg_pool", kernel=0, stride=1), Layer("fc", "fc", EMBEDDING)]


def _pool(r: DlibReader, spec: Layer) -> None:
    r.expect(spec.kind, (f"{spec.kind}_2",))
    nr, nc, sy, sx, py, px = r.int(8), r.int(8), r.int(), r.int(), r.int(), r.int()
    pad = 0 if spec.stride != 1 else spec.kernel // 2
    if (nr, nc, sy, sx, py, px) != (spec.kernel, spec.kernel, spec.stride, spec.stride, pad, pad):
        raise r.fail(f"{spec.kind} is {nr}x{nc}/{sy},{sx} pad {py},{px}; expected {spec}")


def _con(r: DlibReader, spec: Layer, out: FaceNetFile) -> None:
    version = r.expect("con_", ("con_4", "con_5", "con_6"))
    params = r.tensor().reshape(-1)
    filters, nr, nc, sy, sx, py, px = r.int(8), r.int(8), r.int(8), r.int(), r.int(), r.int(), r.int()
    pad = 0 if spec.stride != 1 else spec.kernel // 2
    if (filters, nr, nc, sy, sx, py, px) != (spec.filters, spec.kernel, spec.kernel, spec.stride, spec.stride,
                                            pad, pad):
        raise r.fail(f"con {filters} {nr}x{nc}/{sy} pad {py}; expected {spec}")
    wshape, bshape = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):                           # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.bool():
        raise r.fail("con_ with a fused relu (not in this architecture)")
    nw, nb = int(np.prod(wshape)), int(np.prod(bshape)) if use_bias else 0
    if wshape[0] != filters or nw + nb != params.size:
        raise r.fail(f"con params of {params.size} values do not fit filters {wshape} + biases {bshape}")
    out.tensors[f"{spec.name}.weight"] = params[:nw].reshape(wshape).copy()
    out.tensors[f"{spec.name}.bias"] = (params[nw:].copy() if use_bias else np.zeros(filters, np.float32))


def _affine(r: DlibReader, spec: Layer, out: FaceNetFile) -> None:
    version = r.expect("affine_", ("affine_", "affine_2"))
    params = r.tensor().reshape(-1)
    gshape, bshape = r.alias_tensor(), r.alias_tensor()
    mode = r.int()
    disabled = r.bool() if version == "affine_2" else False
    k = int(np.prod(gshape))
    if mode != 0 or gshape != bshape or gshape[:1] != (1,) or params.size != 2 * k:
        raise r.fail(f"affine mode {mode}, gamma {gshape}, beta {bshape}, {params.size} params")
    gamma, beta = params[:k].copy(), params[k:].copy()
    if disabled:
        gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
    out.tensors[f"{spec.name}.gamma"], out.tensors[f"{spec.name}.beta"] = gamma, beta


def _fc(r: DlibReader, spec: Layer, out: FaceNetFile) -> None:
    version = r.expect("fc_", ("fc_2", "fc_3"))
    outputs, inputs = r.uint(), r.uint()
    params = r.tensor()
    wshape = r.alias_tensor()
    r.alias_tensor()                             # biases: none with FC_NO_BIAS
    bias_mode = r.int()
    for _ in range(4):                           # learning-rate and weight-decay multipliers
        r.float()
    if version == "fc_3":
        r.bool()
    if outputs != spec.filters or bias_mode != 1 or wshape[:2] != (inputs, outputs) or params.size != inputs * outputs:
        raise r.fail(f"fc {inputs}->{outputs}, bias mode {bias_mode}, weights {wshape}, {params.size} params")
    # dlib computes input (N x inputs) @ W (inputs x outputs); torch's Linear wants W^T.
    out.tensors[f"{spec.name}.weight"] = params.reshape(inputs, outputs).T.copy()


def _details(r: DlibReader, spec: Layer, out: FaceNetFile) -> None:
    if spec.kind == "con":
        _con(r, spec, out)
    elif spec.kind == "affine":
        _affine(r, spec, out)
    elif spec.kind == "fc":
        _fc(r, spec, out)
    elif spec.kind in ("max_pool", "avg_pool"):
        _pool(r, spec)
    elif spec.kind == "relu":
        if r.expect("relu_", ("relu_", "relu_2")) == "relu_2" and r.bool():
            raise r.fail("a disabled relu (not in this architecture)")
    elif spec.kind == "add_prev":
        r.expect("add_prev_", ("add_prev_",))


def _state(r: DlibReader, version: int, innermost: bool) -> None:
    """An ``add_layer``'s bookkeeping after its details (discarded)."""
    for _ in range(3):
        r.bool()
    r.tensor(), r.tensor()                       # x_grad, cached_output
    if innermost:
        r.tensor()                               # grad_final
        if version >= 3:
            r.uint(4)                            # _sample_expansion_factor
    elif version >= 2:
        r.tensor()                               # params_grad


def _input_layer(r: DlibReader, out: FaceNetFile) -> None:
    r.expect("input layer", ("input_rgb_image_sized",))
    out.means = (r.float(), r.float(), r.float())
    nr, nc = r.uint(), r.uint()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"input size {nr}x{nc}, expected {CHIP_SIZE}x{CHIP_SIZE}")


def read_face_net(data: bytes, name: str = "<bytes>") -> FaceNetFile:
    """Parse the whole .dat (bytes) into a :class:`FaceNetFile`; every byte must be used."""
    r, out = DlibReader(data, name), FaceNetFile()
    r.version("add_loss_layer", (1,))
    version = r.expect("loss_metric_", ("loss_metric_", "loss_metric_2"))
    out.loss = {"margin": r.float(), "distance_threshold": r.float()} if version == "loss_metric_2" else {}
    seq = forward_layers()
    versions: list[int] = []
    for item in reversed(seq):                   # headers, outside in
        if isinstance(item, str):
            r.version(f"add_{item}_layer", (1,))
        else:
            versions.append(r.version("add_layer", (2, 3) if item is seq[0] else (1, 2)))
    _input_layer(r, out)
    layers = [item for item in seq if isinstance(item, Layer)]
    for spec, version in zip(layers, reversed(versions)):   # details, inside out
        _details(r, spec, out)
        _state(r, version, spec is seq[0])
    if not r.at_end():
        raise r.fail("unread bytes after the network")
    return out


def read_face_net_file(path: str | Path) -> FaceNetFile:
    return read_face_net(Path(path).read_bytes(), str(path))
