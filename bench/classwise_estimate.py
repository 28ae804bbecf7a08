"""Can a trainer who holds only protected images remove class-wise EM's patterns?

Class-wise EM adds the same pattern δ_c to every image of class c. A trainer knows the
labels, so the class mean of the protected images is (class mean of the originals) + δ_c.
Natural class means are smooth; the patterns are not. This benchmark plays that trainer:

1. estimate δ̂_c = highpass(mean of class c's protected images), the high-pass being the
   mean minus its ``--blur``×``--blur`` box blur (reflect padding), with no originals;
2. compare δ̂_c with the applied change (protected − original, class mean): Pearson
   correlation and the share of values whose sign agrees, per class;
3. write the "cleaned" copy round(clip(x − δ̂_c, 0, 255)) of every protected image to
   ``bench/work/protected-NAME-sub`` for ``efficacy.py --stage eval --victims NAME-sub``.

Results go to bench/results/classwise_estimate.json / .md.

    python bench/classwise_estimate.py --name emcw [--blur 5]
    python bench/efficacy.py --stage eval --conditions standard --victims emcw-sub
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common import ROOT, WORK, record, table, write_markdown


def class_files(folder: Path) -> list[Path]:
    """The images of one class folder, sorted by name (the order both loading and saving use)."""
    return sorted(q for q in folder.iterdir() if q.is_file())


def load_folder(folder: Path) -> np.ndarray:
    """Every image of one class folder, in :func:`class_files` order, as float32 (N, H, W, 3) levels."""
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in class_files(folder)])


def highpass(mean: np.ndarray, blur: int) -> np.ndarray:
    """``mean`` (H, W, 3) minus its ``blur``×``blur`` box blur: what is not smooth."""
    t = torch.from_numpy(mean).permute(2, 0, 1)[None]
    smooth = F.avg_pool2d(F.pad(t, (blur // 2,) * 4, mode="reflect"), blur, 1)
    return (t - smooth)[0].permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="emcw", help="the protected-NAME folder under bench/work")
    ap.add_argument("--clean", type=Path, default=WORK / "cifar10-train-1000pc", help="its originals")
    ap.add_argument("--blur", type=int, default=5, help="box-blur side of the high-pass (odd)")
    args = ap.parse_args()
    prot_root, out_root = WORK / f"protected-{args.name}", WORK / f"protected-{args.name}-sub"
    rows = []
    for folder in sorted(p for p in prot_root.iterdir() if p.is_dir()):
        prot = load_folder(folder)
        clean = load_folder(args.clean / folder.name)
        applied = (prot - clean).mean(0)
        estimate = highpass(prot.mean(0), args.blur)
        rows.append({"class": folder.name, "images": len(prot),
                     "corr": float(np.corrcoef(estimate.ravel(), applied.ravel())[0, 1]),
                     "sign_agreement": float((np.sign(estimate) == np.sign(applied)).mean()),
                     "applied_abs_mean": float(np.abs(applied).mean()),
                     "estimate_abs_mean": float(np.abs(estimate).mean())})
        cleaned = np.clip(np.rint(prot - estimate), 0, 255).astype(np.uint8)
        (out_root / folder.name).mkdir(parents=True, exist_ok=True)
        for path, img in zip(class_files(folder), cleaned):
            Image.fromarray(img).save(out_root / folder.name / path.name)
    results = {"blur": args.blur, "classes": rows,
               "sign_agreement_mean": sum(r["sign_agreement"] for r in rows) / len(rows),
               "corr_mean": sum(r["corr"] for r in rows) / len(rows)}
    record("classwise_estimate", f"estimate-{args.name}", results,
           command=f"python bench/classwise_estimate.py --name {args.name} --blur {args.blur}")
    lines = [f"Pattern estimated from protected images alone (`{args.name}`, high-pass = mean − "
             f"{args.blur}×{args.blur} box blur), against the change actually applied (class mean of "
             "protected − original), in levels:", "",
             *table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                    [("class", "class"), ("images", "images"), ("corr", "correlation"),
                     ("sign_agreement", "sign agreement"), ("applied_abs_mean", "applied mean abs(δ)"),
                     ("estimate_abs_mean", "estimate mean abs(δ̂)")]),
             "", f"Mean correlation {results['corr_mean']:.3f}, mean sign agreement "
                 f"{results['sign_agreement_mean']:.3f}. Cleaned copies: `{out_root.relative_to(ROOT)}`."]
    print(write_markdown("classwise_estimate", "Class-wise patterns estimated without the originals", lines))


if __name__ == "__main__":
    main()
