"""Photo benchmark (issue 29): protection measured on face photos, where users live.

This first part fixes the data: LFW-10, the SEM paper's Table 8 protocol transposed to
LFW. The 10 identities of ``../shared/data/lfw`` with the most photos (ties by name),
at most 120 photos each (a seeded sample), split per identity 85/15 into train and test
by a seeded permutation. The split depends only on the file names and the seed, never
on the order the file system lists them, so it is the same on every machine.

    python bench/photos.py split [--work bench/work/photos]

materializes ``WORK/lfw10/{train,test}/<identity>/<file>`` as symlinks into
``../shared/data/lfw`` (nothing is copied; ``bench/work/`` is not committed).

    python bench/photos.py visibility [--weights cifar10] [--variant NAME=PROTECT-OPTIONS ...]
    python bench/photos.py photo12mp --weights FILE [--variant NAME=PROTECT-OPTIONS ...]
    python bench/photos.py photo1mp --weights FILE [--variant NAME=PROTECT-OPTIONS ...]   # 1000x1000
    python bench/photos.py remeasure       # metrics again from the outputs kept in bench/work

protects the bundled example photos and 50 LFW photos (the first 5 test photos of
each LFW-10 identity) with the real ``unlearnable protect``, once per variant, and
measures at full size, per image, PSNR, SSIM and the low-frequency share of the noise
(its energy in 16x16 block averages): mean and worst, one record per (variant, set)
in ``results/photos.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from common import ROOT, WORK, cli, load, record, table, twelve_mp, write_markdown
import targets
from subsets import LFW, link_files, lfw10_split, materialize

#: Protect settings compared for visibility (name -> extra ``protect`` options).
VARIANTS = {
    "default": [],
    "texture": ["--budget", "texture"],
    "scale0.3": ["--eot-scale", "0.3"],
    "texture+scale0.3": ["--budget", "texture", "--eot-scale", "0.3"],
    "highpass16": ["--highpass", "16"],
    "texture+highpass16": ["--budget", "texture", "--highpass", "16"],
}
def visibility_inputs(work: Path, split: dict[str, dict[str, list[str]]]) -> dict[str, Path]:
    """The two photo sets: the bundled examples, and 5 test photos per LFW-10 identity."""
    lfw50 = link_files(work / "lfw50", {person: [LFW / person / name for name in files[:5]]
                                        for person, files in split["test"].items()})
    return {"examples": ROOT / "examples" / "photos", "lfw50": lfw50}


def measure(clean: Path, protected: Path) -> dict[str, object]:
    """PSNR, SSIM and low-frequency share per image pair, full size: mean and worst."""
    import torch
    from unlearnable_cli.io.datasets import match_folders
    from unlearnable_cli.io.images import read_image
    from unlearnable_cli.metrics import low_frequency_share, psnr, spectral_low_share, ssim_batch
    rows = []
    for a_path, b_path in match_folders(clean, protected)[0]:
        a = torch.from_numpy(read_image(a_path).pixels).permute(2, 0, 1)
        b = torch.from_numpy(read_image(b_path).pixels).permute(2, 0, 1)
        rows.append({"psnr": psnr(a, b), "ssim": ssim_batch(a[None], b[None]).item(),
                     "low_freq": low_frequency_share(a, b), "spectral_low": spectral_low_share(a, b),
                     "linf": int((a.int() - b.int()).abs().max())})
    def stat(key: str, worst: str) -> dict[str, float]:
        values = [r[key] for r in rows]
        return {"mean": round(sum(values) / len(values), 4), "worst": round((min if worst == "min" else max)(values), 4)}
    return {"images": len(rows), "psnr_db": stat("psnr", "min"), "ssim": stat("ssim", "min"),
            "low_freq_share": stat("low_freq", "max"), "spectral_low_share": stat("spectral_low", "max"),
            "linf_max": max(r["linf"] for r in rows)}


def loss_medians(out: Path) -> dict[str, float]:
    """The generator's loss on the photos for their target class, median over ``out``'s
    manifest, before and after protection."""
    images = json.loads((out / "manifest.json").read_text())["images"]
    return {k: round(statistics.median(r[k] for r in images), 5) for k in ("loss_before", "loss_after")}


def visibility_results(set_name: str, variant: str, extra: list[str], weights: str, seconds: float,
                       clean: Path, out: Path) -> dict[str, object]:
    """One visibility record: the setting, the generator's loss and :func:`measure` of ``out``."""
    return {"set": set_name, "variant": variant, "protect_options": extra, "weights": weights,
            "protect_seconds": round(seconds, 1), "surrogate_loss_median": loss_medians(out),
            **measure(clean, out)}


def visibility(work: Path, weights: str, variants: dict[str, list[str]], split: dict) -> None:
    for set_name, folder in visibility_inputs(work, split).items():
        for name, extra in variants.items():
            out = work / f"vis-{name}-{set_name}"
            args = ["protect", folder.relative_to(ROOT) if ROOT in folder.parents else folder, "-o", out,
                    "--weights", weights, "--quiet", *extra]
            seconds = cli(*args)
            results = visibility_results(set_name, name, extra, weights, seconds, folder, out)
            record("photos", f"visibility-{name}-{set_name}", results,
                   command="unlearnable " + " ".join(shlex.quote(str(a)) for a in args))
            print(name, set_name, results)


def remeasure(work: Path, split: dict) -> None:
    """Recompute the metrics of every visibility record from the outputs it left under
    ``work`` (metrics added later, e.g. the spectral check), without protecting again;
    the record keeps its command and machine and gains ``environment.remeasured``."""
    from common import RESULTS, environment
    data = load("photos")
    folders = visibility_inputs(work, split)
    for rec in data["records"]:
        r = rec["results"]
        out = work / f"vis-{r.get('variant')}-{r.get('set')}"
        if not rec["key"].startswith("visibility-") or not (out / "manifest.json").is_file():
            continue
        r["surrogate_loss_median"] = loss_medians(out)
        r.update(measure(folders[r["set"]], out))
        env = environment()
        rec["environment"]["remeasured"] = {"commit": env["commit"], "date": env["date"]}
        print(rec["key"], r["spectral_low_share"])
    (RESULTS / "photos.json").write_text(json.dumps(data, indent=1) + "\n")


def summarize() -> None:
    rows, big, one = [], [], []
    for rec in load("photos")["records"]:
        if rec["key"].startswith(("photo12mp-", "photo1mp-")):
            r = rec["results"]
            (big if rec["key"].startswith("photo12mp-") else one).append(
                {"variant": r["variant"], "weights": r["weights"], "s": r["seconds"], "mib": r["extra_mib"]})
        r = rec["results"]
        if not rec["key"].startswith("visibility-"):
            continue
        rows.append({"set": f"{r['set']} ({r['images']})", "variant": r["variant"], "weights": r["weights"],
                     "ssim": f"{r['ssim']['mean']:.3f} ({r['ssim']['worst']:.3f})",
                     "low": f"{r['low_freq_share']['mean']:.2f} ({r['low_freq_share']['worst']:.2f})",
                     "spec": (f"{r['spectral_low_share']['mean']:.2f} ({r['spectral_low_share']['worst']:.2f})"
                              if "spectral_low_share" in r else "—"),
                     "psnr": f"{r['psnr_db']['mean']:.1f} ({r['psnr_db']['worst']:.1f})", "linf": r["linf_max"],
                     "loss": (f"{r['surrogate_loss_median']['loss_before']:.2f} → "
                              f"{r['surrogate_loss_median']['loss_after']:.4f}" if "surrogate_loss_median" in r
                              else "—"),
                     "s": r["protect_seconds"]})
    write_markdown("photos", "Photos: visibility of the noise at full size", [
        f"Mean (worst) per image over the set; targets at ρ_u = 8: SSIM ≥ {targets.PHOTO_SSIM:g} and low-frequency "
        f"share ≤ {targets.PHOTO_LOW_SHARE:g} "
        "(the noise's energy in 16×16 block averages). Spectral check: its energy at periods over 16 px by its "
        "Fourier spectrum, which no block grid can game (`metrics.spectral_low_share`). Generator loss: the "
        "generator's cross-entropy on the photos for their target class, median, before → after protection "
        "(how much the noise still does to the surrogate).", "",
        *table(rows, [("set", "set (images)"), ("variant", "protect options"), ("weights", "generator"),
                      ("ssim", "SSIM"), ("low", "low-frequency share"),
                      ("spec", "spectral check"), ("psnr", "PSNR dB"),
                      ("linf", "L∞ max"), ("loss", "generator loss"), ("s", "protect s")]),
        "", f"A 12-megapixel photo (4000×3000) through `protect` on this CPU; targets ≤ {targets.PHOTO_12MP_SECONDS} s "
        f"and ≤ {targets.PHOTO_12MP_EXTRA_GIB} GiB extra.", "",
        *table(big, [("variant", "protect options"), ("weights", "generator"), ("s", "seconds"),
                     ("mib", "extra MiB")]),
        "", "A 1-megapixel photo (1000×1000), the same way.", "",
        *table(one, [("variant", "protect options"), ("weights", "generator"), ("s", "seconds"),
                     ("mib", "extra MiB")])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["split", "visibility", "remeasure", "photo12mp", "photo1mp", "summary"])
    parser.add_argument("--work", type=Path, default=WORK / "photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="cifar10", help="generator name or file for the visibility stage")
    parser.add_argument("--variant", action="append", default=[], help="NAME=PROTECT-OPTIONS (default: all VARIANTS)")
    args = parser.parse_args()
    if args.stage == "summary":
        summarize()
        return
    if not LFW.is_dir():
        raise SystemExit(f"{LFW}: LFW is not there (see ../shared/README.md)")
    split = lfw10_split(seed=args.seed)
    dest = materialize(split, args.work / "lfw10")
    counts = {part: sum(map(len, people.values())) for part, people in split.items()}
    print(f"{dest}: {counts['train']} train and {counts['test']} test photos of {len(split['train'])} identities")
    if args.stage in ("photo12mp", "photo1mp"):   # targets.PHOTO_12MP_*, per variant; 1 MP: 1000x1000
        import tempfile
        variants = dict((v.split("=", 1)[0], shlex.split(v.split("=", 1)[1])) for v in args.variant) or VARIANTS
        size = (4000, 3000) if args.stage == "photo12mp" else (1000, 1000)
        for name, extra in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                results = {"variant": name, "weights": args.weights, "protect_options": extra, "size": list(size),
                           **twelve_mp(Path(args.weights), Path(tmp), tuple(extra), size)}
            record("photos", f"{args.stage}-{name}", results)
            print(results)
    if args.stage == "remeasure":
        remeasure(args.work, split)
        summarize()
    if args.stage == "visibility":
        variants = dict((v.split("=", 1)[0], shlex.split(v.split("=", 1)[1])) for v in args.variant) or VARIANTS
        visibility(args.work, args.weights, variants, split)
        summarize()


if __name__ == "__main__":
    main()
