"""Efficacy benchmark: does a generator's protection survive an unauthorized trainer?

Stages (each cached under bench/work/, so the benchmark resumes across sessions):
1. a 10k-image training subset of ../shared/data/cifar10/train (1,000 per class,
   symlinks) under --work;
2. for every generator NAME=WEIGHTS: the real `unlearnable protect` command on that
   subset (files on disk), timed;
3. `unlearnable eval --preset quick` on 2,000 test images (200 per class): standard
   training, adversarial training at 4/255 and 2/255, `grayscale`, `jpeg:10`; one
   call per (condition, victim): the clean baseline is trained once (`--runs clean`)
   and shared by every generator (`--runs protected`), same seed and recipe;
4. each finished call becomes one record of bench/results/efficacy.json (bench/common.py's
   schema, keyed `eval-CONDITION-VICTIM[-sSEED]` and `protect-NAME`), and
   efficacy.md is generated from all records.

Usage:
  python bench/efficacy.py --generator sem=weights/sem-resnet18w16-cifar10.safetensors \
      [--generator em=... --generator rem=...] [--stage all|protect|eval|summary] \
      [--conditions standard,adv4,filters,adv2] [--victims clean,sem] [--victim-arch resnet18:16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import SHARED, WORK, cli, load, record, table, write_markdown
import targets
from subsets import cifar_per_class, link_files
from unlearnable_cli.evaluate.report import ratio_cell

CIFAR = SHARED / "cifar10"
PARTS = WORK / "efficacy-parts"          # each call's report: the cache the benchmark resumes from
CONDITIONS = {                      # eval call name -> extra eval arguments (in priority order)
    "standard": ["--adv-radius", "0"],
    "adv4": ["--adv-radius", "4"],
    "filters": ["--defense", "grayscale", "--defense", "jpeg:10"],
    "adv2": ["--adv-radius", "2"],
}
SIDE_BY_SIDE = ("sem", "sem-seed1", "sem-luma", "emcw", "tue", "pil", "pil-luma", "pil-luma-g1")   # issue 49's comparison


def make_subset(work: Path, per_class: int) -> Path:
    return link_files(work / f"cifar10-train-{per_class}pc", cifar_per_class("train", per_class))


def protect(name: str, weights: Path, subset: Path, work: Path, extra: list[str]) -> Path:
    """Protect the subset (resumes and skips finished images); log each call's wall time.
    A call that starts from an empty output folder starts a fresh log (a redo, not a resume);
    a call that finds every image done is not logged."""
    out = work / f"protected-{name}"
    resumed = (out / "manifest.json").exists()
    seconds = cli("protect", str(subset), "-o", str(out), "--weights", str(weights), "--quiet", *extra)
    images = json.loads((out / "manifest.json").read_text())["images"]
    timing = PARTS / f"protect-{name}.json"
    calls = json.loads(timing.read_text())["calls"] if timing.exists() and resumed else []
    if calls and calls[-1]["images_done"] == len(images):
        return out                  # nothing left to protect: a check, not protect time
    calls.append({"seconds": round(seconds, 1), "images_done": len(images)})
    PARTS.mkdir(parents=True, exist_ok=True)
    results = {"generator": str(weights), "extra_args": extra, "images": len(images), "calls": calls,
               "seconds_total": round(sum(c["seconds"] for c in calls), 1),
               "psnr_mean": sum(r["psnr"] for r in images) / len(images),
               "linf_max": max(r["linf"] for r in images)}
    timing.write_text(json.dumps(results, indent=1))
    record("efficacy", timing.stem, results, command=f"unlearnable protect {subset} -o {out} --weights {weights} "
                                                     f"--quiet {' '.join(extra)}".strip())
    return out


def evaluate(names: list[str], conditions: list[str], subset: Path, work: Path, seed: int,
             arch: str | None = None) -> None:
    """One eval call per (condition, victim): "clean" trains the clean baseline once
    (`--runs clean`), each generator name its protected victim (`--runs protected`);
    same seed and recipe, so the runs compare exactly and finished parts are reused.
    Victim seed 0 is the main benchmark; other seeds measure the spread between victims.
    ``arch`` ``NAME:WIDTH``: victims of another architecture (transfer), keyed ``-arch-NAME``."""
    victim = [] if arch is None else ["--arch", arch.split(":")[0], "--width", arch.split(":")[1]]
    suffix = "" if arch is None else f"-arch-{arch.split(':')[0]}"
    for cond in conditions:
        for name in names:
            report = PARTS / f"eval-{cond}-{name}{'' if seed == 0 else f'-s{seed}'}{suffix}.json"
            if report.exists():
                print(f"cached: {report}")
                continue
            which = (["--runs", "clean"] if name == "clean" else
                     ["--runs", "protected", f"--protected={name}={work / f'protected-{name}'}"])
            args = ["eval", "--preset", "quick", "--clean", str(subset), *which, "--test", str(CIFAR / "test"),
                    "--test-per-class", "200", *CONDITIONS[cond], *victim, "--seed", str(seed),
                    "--report", str(report), "--quiet"]
            cli(*args)
            d = json.loads(report.read_text())
            record("efficacy", report.stem, {k: d[k] for k in ("settings", "imperceptibility", "runs", "seconds")},
                   command="unlearnable " + " ".join(args))


def baseline_key(r: dict) -> tuple:
    """What a protected run is compared with: the clean victim of the same architecture,
    trainer (radius, defense) and victim seed."""
    return r["arch"], r["adv_radius"], r["defense"], r["seed"]


def paired(runs: list[dict]) -> list[tuple[dict, dict, float]]:
    """(protected run, its clean baseline, protected / clean final accuracy), in ``runs``'
    order, for every protected run whose baseline was measured."""
    clean = {baseline_key(r): r for r in runs if r["data"] == "clean"}
    return [(r, clean[baseline_key(r)], r["final_acc"] / clean[baseline_key(r)]["final_acc"])
            for r in runs if r["data"] == "protected" and baseline_key(r) in clean]


def sem_targets(runs: list[dict]) -> list[str]:
    """The issue's acceptance checks (quick ConvNet, victim seed 0), each stated as met,
    missed, or not yet measured."""
    ratio = {(r["method"], r["adv_radius"], r["defense"]): q for r, _, q in paired(runs)}
    lines = []
    for label, method, radius, limit in targets.SEM_RATIOS:
        value = ratio.get((method, radius, "none"))
        verdict = "not measured" if value is None else f"{value:.2f}: " + ("met" if value <= limit else "MISSED")
        lines.append(f"- SEM, {label}, ratio ≤ {limit:.2f}: {verdict}")
    sem4 = ratio.get(("sem", 4.0, "none"))
    for other in targets.SEM_BEATS:
        value = ratio.get((other, 4.0, "none"))
        verdict = ("not measured" if sem4 is None or value is None else
                   f"SEM {sem4:.2f} vs {other.upper()} {value:.2f}: " + ("met" if sem4 < value else "MISSED"))
        lines.append(f"- SEM strictly better than {other.upper()} at 4/255: {verdict}")
    return lines


def tue_targets(runs: list[dict]) -> list[str]:
    """TUE's transfer targets (bench/targets.py), over every victim architecture measured for
    both SEM and TUE (victim seed 0): TUE's mean ratio at 4/255 below SEM's, and under
    standard training no more than ``TUE_STANDARD_SLACK`` above SEM's."""
    ratio = {(r["method"], r["arch"], r["adv_radius"]): q for r, _, q in paired(runs)
             if r["seed"] == 0 and r["defense"] == "none"}
    lines = []
    for radius, label, ok in [(4.0, "adversarial 4/255: TUE's mean below SEM's", lambda t, s: t < s),
                              (0.0, f"standard: TUE's mean at most SEM's + {targets.TUE_STANDARD_SLACK:g}",
                               lambda t, s: t <= s + targets.TUE_STANDARD_SLACK)]:
        archs = sorted({a for (m, a, r) in ratio if m == "tue" and r == radius} &
                       {a for (m, a, r) in ratio if m == "sem" and r == radius})
        if not archs:
            continue
        tue, sem = (sum(ratio[m, a, radius] for a in archs) / len(archs) for m in ("tue", "sem"))
        per = ", ".join(f"{a} {ratio['tue', a, radius]:.2f} vs {ratio['sem', a, radius]:.2f}" for a in archs)
        lines.append(f"- {label}, over {len(archs)} victim(s) ({per}): TUE {tue:.2f} vs SEM {sem:.2f}: "
                     + ("met" if ok(tue, sem) else "MISSED") + ("" if len(archs) >= targets.TUE_MIN_VICTIMS
                        else f" (fewer than {targets.TUE_MIN_VICTIMS} victims)"))
    return ["", "TUE against SEM (TUE vs SEM ratio per victim architecture):", "", *lines] if lines else []


def condition(r: dict) -> str:
    """Table label of a run's training condition."""
    return ("standard" if not r["adv_radius"] else f"adv {r['adv_radius']:g}/255") + (
        "" if r["defense"] == "none" else f" + {r['defense']}")


def seed_spread(runs: list[dict]) -> list[str]:
    """Ratios per victim seed where more than one seed was run (each seed against its own clean
    victim), and whether SEM beats EM and REM at every seed: is a difference more than seed noise?"""
    ratios: dict[tuple, dict[int, float]] = {}
    for r, _, q in paired(runs):
        ratios.setdefault((condition(r), r["method"]), {})[r["seed"]] = q
    seeds = sorted({s for by_seed in ratios.values() for s in by_seed})
    if len(seeds) < 2:
        return []
    lines = ["", "Victim-seed spread (ratio per seed, each against the clean victim of the same seed):", "",
             "| condition | method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for (cond, method), by_seed in ratios.items():
        if len(by_seed) < 2:
            continue
        cells = [f"{by_seed[s]:.2f}" if s in by_seed else "—" for s in seeds]
        lines.append(f"| {cond} | {method} | " + " | ".join(cells) + f" | {sum(by_seed.values()) / len(by_seed):.2f} |")
    lines.append("")
    sem = ratios.get(("adv 4/255", "sem"), {})
    for other in targets.SEM_BEATS:
        theirs = ratios.get(("adv 4/255", other), {})
        both = sorted(set(sem) & set(theirs))
        if both:
            wins = [s for s in both if sem[s] < theirs[s]]
            lines.append(f"- SEM below {other.upper()} at 4/255 at {len(wins)} of {len(both)} victim seeds "
                         f"({', '.join(f'seed {s}: {sem[s]:.2f} vs {theirs[s]:.2f}' for s in both)})")
    return lines


def transfer_table(runs: list[dict]) -> list[str]:
    """Ratios for victims of other architectures than the quick ConvNet (transfer), per condition."""
    rows = [{"arch": r["arch"], "condition": condition(r), "method": r["method"],
             "clean": f"{c['final_acc']:.1f}", "protected": f"{r['final_acc']:.1f}", "ratio": f"{q:.2f}"}
            for r, c, q in paired(runs)]
    if not rows:
        return []
    return ["", "Transfer: victims of other architectures (ratio = protected / clean of the same architecture):", "",
            *table(rows, [("arch", "victim"), ("condition", "condition"), ("method", "method"),
                          ("clean", "clean"), ("protected", "protected"), ("ratio", "ratio")])]


def side_by_side(runs: list[dict]) -> list[str]:
    """One row per noise of ``SIDE_BY_SIDE`` (SEM beside the linear-surrogate and luma variants),
    one column per training condition: ratio [95% interval], same victims and test images."""
    cells: dict[str, dict[str, str]] = {}
    for r, c, _ in paired(runs):
        if r["method"] in SIDE_BY_SIDE:
            cells.setdefault(r["method"], {})[condition(r)] = ratio_cell(r["final_acc"], c["final_acc"], r["n"])
    if not cells:
        return []
    conds = [c for c in ("standard", "adv 2/255", "adv 4/255", "standard + grayscale", "standard + jpeg:10")
             if any(c in row for row in cells.values())]
    return ["", "Side by side (ratio [95% interval], quick ConvNet, victim seed 0; `-g1`: the generator fitted "
            "with seed 1; — not measured):", "",
            "| noise | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds),
            *(f"| {m} | " + " | ".join(cells[m].get(c, "—") for c in conds) + " |"
              for m in SIDE_BY_SIDE if m in cells)]


def summary() -> None:
    """Render efficacy.md from every record of efficacy.json."""
    records, quality, timings, wall = [], {}, {}, {}
    data = load("efficacy")
    for rec in data["records"]:
        if rec["key"].startswith("protect-"):
            timings[rec["key"].removeprefix("protect-")] = rec["results"]
            continue
        if not rec["key"].startswith("eval-"):       # other probes (pil-steps) have their own tables
            continue
        res = rec["results"]
        wall[rec["key"]] = res["seconds"]
        quality.update(res["imperceptibility"])
        for run in res["runs"]:
            records.append(dict(run, method="clean" if run["data"] == "clean" else run["name"], part=rec["key"],
                                seed=res["settings"]["victim"]["seed"], arch=res["settings"]["victim"]["arch"],
                                n=res["settings"]["test_images"]))
    order = {c: i for i, c in enumerate(CONDITIONS)}
    records.sort(key=lambda r: (order[r["part"].split("-")[1]], r["adv_radius"], r["defense"], r["method"], r["seed"]))
    transfer = [r for r in records if r["arch"] != "convnet"]
    records = [r for r in records if r["arch"] == "convnet"]
    main_runs = [r for r in records if r["seed"] == 0]
    rows = [{"condition": condition(r), "method": r["method"],
             "clean": f"{c['final_acc']:.1f} ({c['best_acc']:.1f})",
             "protected": f"{r['final_acc']:.1f} ({r['best_acc']:.1f})",
             "ratio": ratio_cell(r["final_acc"], c["final_acc"], r["n"])}
            for r, c, q in paired(main_runs)]
    commits = sorted({rec["environment"].get("commit", "?") for rec in data["records"]})
    lines = ["Accuracy on clean CIFAR-10 test images (2,000) of a victim trained on 10,000 images, in percent,",
             "final epoch (best epoch in parentheses); ratio = protected / clean, final epoch [95% interval,",
             "Katz's log method, `metrics.ratio_interval`]. Victim seed 0.",
             f"{len(data['records'])} records measured at {len(commits)} commits; 2-core CPU machines.", ""]
    lines += table(rows, [("condition", "condition"), ("method", "method"), ("clean", "clean"),
                          ("protected", "protected"), ("ratio", "ratio")])
    lines += side_by_side(main_runs)
    lines += ["", "Targets for the shipped SEM generator:", ""] + sem_targets(main_runs)
    lines += seed_spread(records)
    lines += transfer_table(transfer)
    lines += tue_targets(main_runs + transfer)
    lines += ["", "Protect runs (the real `unlearnable protect` on the 10k subset):", ""]
    for name, t in timings.items():
        lines.append(f"- {name}: {t['images']} images, {t['seconds_total']} s, PSNR mean {t['psnr_mean']:.2f} dB, "
                     f"L∞ max {t['linf_max']}")
    lines += ["", "Eval wall time per call (s): " + ", ".join(f"{k} {v}" for k, v in wall.items())]
    print(write_markdown("efficacy", "Efficacy benchmark", lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", action="append", default=[], help="NAME=WEIGHTS (repeatable)")
    ap.add_argument("--protect-args", action="append", default=[], help="NAME=ARGS extra protect options")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--stage", choices=("all", "protect", "eval", "summary"), default="all")
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help=f"comma-separated, from {', '.join(CONDITIONS)}")
    ap.add_argument("--seed", type=int, default=0, help="victim seed (0: the main table; others: the spread)")
    ap.add_argument("--victim-arch", default=None, metavar="NAME:WIDTH",
                    help="victims of another architecture, e.g. resnet18:16 or mobilenetv2:8 (transfer)")
    ap.add_argument("--victims", default=None,
                    help="comma-separated victims to train: clean and/or generator names (default: all)")
    args = ap.parse_args()
    if not CIFAR.exists():
        sys.exit(f"{CIFAR} is missing: this benchmark needs ../shared/data/cifar10")
    gens = dict(g.split("=", 1) for g in args.generator)
    extra = {k: v.split() for k, v in (p.split("=", 1) for p in args.protect_args)}
    conditions = args.conditions.split(",")
    if unknown := set(conditions) - set(CONDITIONS):
        sys.exit(f"unknown condition(s): {', '.join(sorted(unknown))}")
    subset = make_subset(args.work, args.per_class)
    if args.stage in ("all", "protect"):
        for name, weights in gens.items():
            protect(name, Path(weights), subset, args.work, extra.get(name, []))
    if args.stage in ("all", "eval"):
        victims = args.victims.split(",") if args.victims else ["clean", *gens]
        evaluate(victims, conditions, subset, args.work, args.seed, args.victim_arch)
    summary()


if __name__ == "__main__":
    main()
