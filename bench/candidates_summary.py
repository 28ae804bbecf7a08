"""Collect the 2,000-image candidate comparisons (``bench/candidates.sh``) into one table.

Writes ``results/candidates_2k.json`` and ``results/candidates_2k.md``: for every candidate,
the final-epoch test accuracy of a quick victim trained on the protected 2k subset, under
standard training and adversarial training at 4/255, as a ratio of the clean-trained
victim's accuracy on the same subset (same seed and recipe).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "cand"
RESULTS = HERE / "results"

#: name -> (what it is, how it was made). The shipped generator with protect's defaults
#: is "shipped"; its runs come from the ablation reports. Commands spell out the K's
#: (--noise-steps, --eot-samples) because the cpu preset's K's changed in session 6.
CANDIDATES: dict[str, tuple[str, str]] = {
    "shipped": ("generator shipped until session 7 (SEM, w16, M=2400, K 5/2/5), protect defaults",
                "see results/ablation_random_radius_2k.json"),
    "s300": ("SEM generator w16, K 5/2/5, M=300 (the issue's calibration budget), protect defaults",
             "unlearnable train-generator ../shared/data/cifar10/train -o runs/cand-s300/sem-s300.safetensors "
             "--method sem --preset cpu --steps 300 --noise-steps 5 --eot-samples 2; bash bench/candidates.sh s300 --weights runs/cand-s300/sem-s300.safetensors"),
    "rr8": ("shipped generator, protect with rho_r = 8/255 (EOT over a larger random perturbation)",
            "bash bench/candidates.sh rr8 --random-radius 8"),
    "k30": ("shipped generator, protect with K_u = 30 noise steps (3x the default)",
            "bash bench/candidates.sh k30 --steps 30"),
    # Baselines at s300's budget (300 steps x 16 passes = 4,800 forward+backward passes at batch 128).
    "rem73": ("REM generator w16, K 5/2/5, M=73 (s300's budget in passes), protect with J = 1",
              "unlearnable train-generator ../shared/data/cifar10/train -o runs/rem-s73/rem-s73.safetensors "
              "--method rem --preset cpu --steps 73 --noise-steps 5 --eot-samples 2; "
              "bash bench/candidates.sh rem73 --weights runs/rem-s73/rem-s73.safetensors --eot-samples 1"),
    # cpu-preset alternatives at s300's budget (session 6).
    "k10j1": ("SEM generator w16, K_u 10 / J 1 / K_a 5 (same 16 passes per step), M=300, protect defaults",
              "unlearnable train-generator ../shared/data/cifar10/train -o runs/cand-k10j1/sem-k10j1.safetensors "
              "--method sem --preset cpu --steps 300 --noise-steps 10 --eot-samples 1; "
              "bash bench/candidates.sh k10j1 --weights runs/cand-k10j1/sem-k10j1.safetensors"),
    "w32": ("SEM generator width 32, K 5/2/5, M=86 (about s300's time: ~3x the cost per step), protect defaults",
            "unlearnable train-generator ../shared/data/cifar10/train -o runs/cand-w32/sem-w32.safetensors "
            "--method sem --preset cpu --width 32 --steps 86 --noise-steps 5 --eot-samples 2; "
            "bash bench/candidates.sh w32 --weights runs/cand-w32/sem-w32.safetensors"),
    "ra8": ("SEM generator w16, K 5/2/5, M=300, adversarial radius rho_a 8/255 (step 1.6), rho_r 4/255",
            "unlearnable train-generator ../shared/data/cifar10/train -o runs/cand-ra8/sem-ra8.safetensors "
            "--method sem --preset cpu --steps 300 --noise-steps 5 --eot-samples 2 --adv-radius 8 --adv-step-size 1.6 --random-radius 4; "
            "bash bench/candidates.sh ra8 --weights runs/cand-ra8/sem-ra8.safetensors --random-radius 4"),
    "em15": ("EM generator w16 trained on this 2k subset (EM's recipe, K_u 20); "
             "stopped on its 99% condition after 6 rounds, under s300's budget",
             "unlearnable train-generator ../shared/data/cifar10/train -o runs/em-r15/em-r15.safetensors "
             "--method em --preset cpu --per-class 200 --steps 150 --eot-samples 2; "
             "bash bench/candidates.sh em15 --weights runs/em-r15/em-r15.safetensors"),
    # The current cpu preset at full length (session 7).
    "cpu2100": ("SEM generator of the current cpu preset (w16, K_u 10 / J 1 / K_a 5, M=2100), protect defaults",
                "unlearnable train-generator ../shared/data/cifar10/train "
                "-o runs/sem-cpu-k10j1/sem-resnet18w16-cifar10.safetensors --method sem --preset cpu; "
                "bash bench/candidates.sh cpu2100 --weights runs/sem-cpu-k10j1/sem-resnet18w16-cifar10.safetensors"),
}


def final_acc(runs: list[dict], field: str, value: str, key: str = "final_acc") -> float:
    """Final-epoch (or, with ``key="best_acc"``, best-epoch) accuracy of the run whose ``field`` equals ``value``."""
    return next(r[key] for r in runs if r.get(field) == value)


def report_runs(report: Path) -> list[dict] | None:
    """The runs of an eval report, or None when the candidate has not been run yet."""
    return json.loads(report.read_text())["runs"] if report.exists() else None


def main() -> None:
    ablation = json.loads((RESULTS / "ablation_random_radius_2k.json").read_text())
    adv = ablation["adv4_same_2k_subset"]["runs"]
    clean_std, clean_adv = final_acc(ablation["runs"], "data", "clean"), final_acc(adv, "data", "clean")
    # Reports under bench/work are not committed: a candidate whose report is gone keeps
    # the figures recorded in the committed summary.
    old = RESULTS / "candidates_2k.json"
    recorded = {r["name"]: r for r in json.loads(old.read_text())["candidates"]} if old.exists() else {}
    rows = []
    for name, (what, command) in CANDIDATES.items():
        if name == "shipped":   # the shipped generator's runs are in the ablation report
            std, adv4 = final_acc(ablation["runs"], "name", "rr4"), final_acc(adv, "data", "protected")
            best = final_acc(ablation["runs"], "name", "rr4", "best_acc")
        else:
            std_runs, adv_runs = (report_runs(WORK / f"{kind}-{name}.json") for kind in ("std", "adv4"))
            std = final_acc(std_runs, "name", name) if std_runs else None
            best = final_acc(std_runs, "name", name, "best_acc") if std_runs else None
            adv4 = final_acc(adv_runs, "name", name) if adv_runs else None
            if std_runs is None and adv_runs is None and name in recorded:
                std, adv4 = recorded[name]["standard"], recorded[name]["adv4"]
                best = recorded[name].get("best_standard")
        rows.append(dict(name=name, what=what, command=command, standard=std, best_standard=best, adv4=adv4,
                         ratio_standard=None if std is None else round(std / clean_std, 2),
                         ratio_adv4=None if adv4 is None else round(adv4 / clean_adv, 2)))
    out = dict(subset="bench/work/ablation/clean-200 (2,000 CIFAR-10 training images), 2,000 test images",
               victim="eval --preset quick (ConvNet w32, 10 epochs; adversarial: PGD-3 at 4/255), seed 0",
               clean_standard=clean_std, clean_adv4=clean_adv, candidates=rows,
               machine=f"{platform.platform()} (summary); the candidates ran on 2-core VMs without GPU "
                       "across sessions 4-7 (see bench/README.md)")
    (RESULTS / "candidates_2k.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Candidate generators and protect options on the 2k subset", "",
             f"Victim: {out['victim']}. Clean-trained: {clean_std}% (standard), {clean_adv}% (adv 4/255).",
             "Final-epoch accuracy of the victim trained on the protected subset; ratio = protected / clean.", "",
             "Best epoch (standard training) is what an early-stopping attacker gets; '—' where not recorded.", "",
             "| candidate | standard | ratio | best epoch | adv 4/255 | ratio |", "|---|---|---|---|---|---|"]
    for r in rows:
        best = "—" if r["best_standard"] is None else r["best_standard"]
        lines.append(f"| {r['name']}: {r['what']} | {r['standard']} | {r['ratio_standard']} | {best} "
                     f"| {r['adv4']} | {r['ratio_adv4']} |")
    (RESULTS / "candidates_2k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
