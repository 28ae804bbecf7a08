"""Experiment (issue 29): noise kept in a sharp band of periods, instead of ``--highpass``.

``protect --highpass PX`` removes the noise's PX-block means (bilinearly interpolated) at
every step; that filter is leaky, so much of what is left still lies at periods of 16-32 px
(the spectral check in ``results/photos.md``).  This driver asks whether a sharp filter
does better: it runs the real ``protect`` in-process with ``noise.coarse_part`` replaced so
that ``δ − coarse_part(δ)`` is δ's part at periods between ``--min`` and ``--max`` photo
pixels (an FFT mask), applied where ``--highpass`` would apply it (gradient before the sign,
noise after the step; the bound is enforced after it, as always).  It is not a ``protect``
option: measured, it did not keep more protection than ``--highpass 16`` (docs/protect.md).

    python bench/band_filter.py protect --min 8 --max 32      # LFW-10 training photos -> faces.py eval
    python bench/band_filter.py visibility --min 8 --max 32   # bundled photos and lfw50, as photos.py
    python bench/faces.py eval --name faces-band8-32 --sizes 64 --conditions standard --sites none \\
        --victims faces-band8-32

Both stages use ``--budget texture`` and the ``faces`` generator unless ``--protect-args``
says otherwise; ``--highpass 16`` is passed only to switch the filter on (its size is unused).
"""

from __future__ import annotations

import argparse
import shlex
import time

import torch

import unlearnable_cli.engine.noise as noise
from common import WORK, command_line, record

ENGINE = ["--highpass", "16"]   # switches noise.py's filter on; band_part replaces what it removes


def band_part(delta: torch.Tensor, shortest: float, longest: float) -> torch.Tensor:
    """``delta`` ``(B, C, H, W)`` restricted to spatial periods in [shortest, longest] pixels."""
    h, w = delta.shape[-2:]
    fy = torch.fft.fftfreq(h, device=delta.device).abs().view(-1, 1)
    fx = torch.fft.rfftfreq(w, device=delta.device).view(1, -1)
    f = (fy.square() + fx.square()).sqrt()                       # cycles per pixel
    mask = ((f >= 1 / longest) & (f <= 1 / shortest)).to(delta.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(delta) * mask, s=(h, w))


def protect_in_band(shortest: float, longest: float, args: list[str]) -> float:
    """Run ``unlearnable protect ARGS`` in this process with the band filter; wall seconds."""
    from unlearnable_cli.commands.app import app
    original = noise.coarse_part
    noise.coarse_part = lambda d, size: d - band_part(d, shortest, longest)
    start = time.perf_counter()
    try:
        app(["protect", *map(str, args)], standalone_mode=False)
    finally:
        noise.coarse_part = original
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("protect", "visibility"))
    ap.add_argument("--min", type=float, default=8, help="shortest period kept, photo pixels")
    ap.add_argument("--max", type=float, default=32, help="longest period kept, photo pixels")
    ap.add_argument("--weights", default="faces")
    ap.add_argument("--protect-args", default="--budget texture")
    a = ap.parse_args()
    name = f"faces-band{a.min:g}-{a.max:g}"
    extra = [*shlex.split(a.protect_args), *ENGINE]
    from faces import protect_results
    from photos import lfw10_split, materialize, visibility_inputs, visibility_results
    band = {"band_px": [a.min, a.max]}
    if a.stage == "protect":
        split = materialize(lfw10_split(), WORK / "faces" / "lfw10")
        out = WORK / "faces" / f"protected-{name}"
        seconds = protect_in_band(a.min, a.max, [split / "train", "-o", out, "--weights", a.weights, "--quiet", *extra])
        record("faces", f"protect-{name}", {**protect_results(out, a.weights, extra, seconds), **band},
               command=command_line())
        return
    work = WORK / "photos"
    for set_name, folder in visibility_inputs(work, lfw10_split()).items():
        out = work / f"vis-{name}-{set_name}"
        seconds = protect_in_band(a.min, a.max, [folder, "-o", out, "--weights", a.weights, "--quiet", *extra])
        variant = f"{name} ({a.protect_args}, band {a.min:g}-{a.max:g} px)"
        results = {**visibility_results(set_name, variant, extra, a.weights, seconds, folder, out), **band}
        record("photos", f"visibility-{name}-{set_name}", results, command=command_line())
        print(name, set_name, results)


if __name__ == "__main__":
    main()
