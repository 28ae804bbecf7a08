"""Does protection work?  Train fresh victims the way an unauthorized trainer would.

One entry point, :func:`run_evaluation`, for both scenarios of an :class:`EvalConfig`:

- standard: for every setting (adversarial-training radius × defense) a victim is
  trained on the clean images and one on each protected copy, with the same seed and
  recipe, and its clean test accuracy is recorded per epoch;
- personal folder: the user's images join a background data set as one extra class;
  the victim's recognition of held-out clean user images is recorded.

Both run through one loop (:func:`train_victims`) that owns the resume journal: with a
report path, every finished victim is kept beside it (:mod:`journal`), a rerun reuses
them, and the journal is removed once the report is written.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import __version__
from . import defenses
from ..engine import seeding
from ..io.atomic import atomic_path
from ..config import Attacker, ConfigError, EvalConfig, VictimRuns
from ..config.evaluate import BACKGROUND_TEST_ONE_IN
from ..io.datasets import Loader, data_digest, load_files, load_image_folder, load_pairs, load_test, match_folders
from .journal import RunJournal, journal_path, run_key
from ..metrics import imperceptibility
from .victims import Setting, Trained, train_victim

Progress = Callable[[str, int, int], None]


@dataclass
class Run:
    """One trained victim; ``adv_radius`` in [0, 1] units (reports say levels)."""

    data: str                     # "clean" or "protected"
    name: str                     # protected copy's name ("clean" for clean runs)
    adv_radius: float
    defense: str
    acc_per_epoch: list[float]    # percent
    seconds: float
    poison_ratio: float = 1.0
    extra: dict[str, object] = field(default_factory=dict)
    attacker: str = "scratch"     # or a recognizer variant, e.g. "embedding:1nn" (Attacker.variants)

    @property
    def final_acc(self) -> float:
        return self.acc_per_epoch[-1]

    @property
    def best_acc(self) -> float:
        return max(self.acc_per_epoch)

    @property
    def adv_levels(self) -> float:
        return round(self.adv_radius * 255, 6)

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(adv_radius=self.adv_levels, final_acc=self.final_acc, best_acc=self.best_acc,
                 best_epoch=self.acc_per_epoch.index(self.best_acc) + 1)
        d.update(extra)
        return d


@dataclass
class EvalReport:
    settings: dict[str, object]
    runs: list[Run]
    imperceptibility: dict[str, dict[str, float]]
    seconds: float
    reused_runs: int = 0          # victims taken from an interrupted run's journal, not retrained

    def to_dict(self) -> dict[str, object]:
        return {"settings": self.settings, "imperceptibility": self.imperceptibility,
                "runs": [r.to_dict() for r in self.runs], "seconds": round(self.seconds, 1),
                "reused_runs": self.reused_runs,
                "versions": {"unlearnable": __version__, "torch": torch.__version__,
                             "python": platform.python_version()},
                "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()}}

    def write(self, path: Path) -> None:
        """Write the JSON report atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))


@dataclass
class Victim:
    """What one victim trains on: ``data`` "clean" or "protected", the copy's name."""

    data: str
    name: str
    images: torch.Tensor          # uint8 (N, 3, S, S)
    labels: torch.Tensor
    poison_ratio: float = 0.0


@dataclass
class Scenario:
    """What one evaluation trains and measures (built by :func:`standard_scenario` or
    :func:`personal_scenario`)."""

    victims: list[Victim]
    evals: dict[str, tuple[torch.Tensor, torch.Tensor]]   # name -> (uint8 images, labels); the first is the score
    classes: list[str]
    imperceptibility: dict[str, dict[str, float]]
    settings: dict[str, object]                            # what the report says about the data


def mix(clean: torch.Tensor, protected: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """Training set where a seeded ``ratio`` of the images are protected, the rest clean."""
    if ratio >= 1:
        return protected
    n = len(clean)
    chosen = torch.randperm(n, generator=seeding.generator(seed, "poison"))[: round(ratio * n)]
    out = clean.clone()
    out[chosen] = protected[chosen]
    return out


def train_victims(victims: list[Victim], evals: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                  identity: dict[str, object], cfg: EvalConfig, settings: list[Setting], device: torch.device,
                  journal: RunJournal[Run], progress: Progress) -> list[Run]:
    """Every victim under every setting and attacker variant, reusing the journal's
    finished ones.

    The first eval set is the run's accuracy; the others are kept as
    ``<name>_acc_per_epoch`` and ``<name>_acc`` beside it.  A victim's key hashes
    ``identity`` (recipe, classes, eval data), the condition, the attacker variant (for
    recognizers) and its training tensors.
    """
    primary, *others = evals
    runs = []
    for setting in settings:
        for v in victims:
            for variant in cfg.attacker.variants:
                def train() -> Run:           # called at once, inside this iteration
                    t0 = time.perf_counter()
                    label = f"{setting.label}: {v.name}" + ("" if variant == "scratch" else f" ({variant})")
                    trained = _train_one(v, evals, num_classes, cfg, setting, variant, device,
                                         lambda e: progress(label, e, _epochs(cfg, variant)))
                    history = trained.history
                    extra: dict[str, object] = {"weights_sha256": trained.weights_sha256}
                    for name in others:
                        extra.update({f"{name}_acc_per_epoch": history[name], f"{name}_acc": history[name][-1]})
                    return Run(v.data, v.name, setting.adv_radius, setting.defense.label, history[primary],
                               round(time.perf_counter() - t0, 1), v.poison_ratio, extra, variant)
                key = run_key(**identity, adv_radius=setting.adv_radius, defense=setting.defense.label,
                              data=v.data, name=v.name, poison_ratio=v.poison_ratio,
                              train=data_digest(v.images, v.labels),
                              **({} if variant == "scratch" else {"attacker": variant}))
                runs.append(journal.run(key, train))
    return runs


def _epochs(cfg: EvalConfig, variant: str) -> int:
    return {"scratch": cfg.victim.epochs, "finetune:head": cfg.recognizer.epochs,
            "finetune:whole": cfg.recognizer.epochs}.get(variant, 1)


def _train_one(v: Victim, evals: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int, cfg: EvalConfig,
               setting: Setting, variant: str, device: torch.device, on_epoch: Callable[[int], None]) -> Trained:
    if variant == "scratch":
        return train_victim(v.images, v.labels, evals, num_classes, cfg.victim, setting, device, on_epoch=on_epoch)
    from .recognizers import train_recognizer
    return train_recognizer(v.images, v.labels, evals, num_classes, cfg.recognizer, variant, device, on_epoch)


def image_loader(cfg: EvalConfig) -> Loader:
    """How ``cfg``'s attacker sees a photo: resized to the victim's square size, or the
    recognizer's 150x150 face chip (:mod:`unlearnable_cli.faces.enrol`)."""
    if cfg.attacker is Attacker.SCRATCH:
        return lambda files: load_files(files, cfg.victim.image_size)
    from ..faces.enrol import load_chips
    return load_chips


def standard_scenario(cfg: EvalConfig, load: Loader) -> Scenario:
    """Victims, eval sets, class names, imperceptibility and report settings of
    ``--clean/--protected/--test``, images decoded by ``load``."""
    assert cfg.clean is not None and cfg.test is not None
    v = cfg.victim
    victims, quality = [], {}
    clean_u8 = labels = None
    names: list[str] = []
    if not cfg.protected:
        clean_u8, _, labels, names, _ = load_pairs(cfg.clean, cfg.clean, v.image_size, cfg.allow_missing,
                                                   cfg.per_class, load_protected=False, loader=load)
    for name, prot_dir in cfg.protected.items():
        c, p, y, n, pairs = load_pairs(cfg.clean, prot_dir, v.image_size, cfg.allow_missing, cfg.per_class,
                                       loader=load)
        if labels is not None and not torch.equal(y, labels):
            raise ConfigError(f"{prot_dir}: matches a different set of images than the other protected folders")
        clean_u8, labels, names = c, y, n
        if cfg.runs is not VictimRuns.CLEAN:
            victims.append(Victim("protected", name, mix(c, p, cfg.poison_ratio, v.seed), y, cfg.poison_ratio))
        quality[name] = imperceptibility(pairs)
    assert clean_u8 is not None and labels is not None
    if cfg.runs is not VictimRuns.PROTECTED:
        victims.insert(0, Victim("clean", "clean", clean_u8, labels))
    test_x, test_y = load_test(cfg.test, names, v.image_size, cfg.test_per_class, loader=load)
    settings = {"clean": str(cfg.clean), "protected": {k: str(p) for k, p in cfg.protected.items()},
                "test": str(cfg.test), "per_class": cfg.per_class, "test_per_class": cfg.test_per_class,
                "poison_ratio": cfg.poison_ratio, "train_images": len(labels), "test_images": len(test_y),
                "classes": names, "runs": cfg.runs.value}
    return Scenario(victims, {"test": (test_x, test_y)}, names, quality, settings)


def personal_scenario(cfg: EvalConfig, load: Loader) -> Scenario:
    """The same for ``--target/--target-protected/--background``: a seeded
    ``target_holdout`` of the user's clean images is never trained on; a held-out 10%
    of the background measures the victim's accuracy on everyone else and its false
    alarms (``false_alarm``: how often it calls someone else the user), without which a
    victim that calls everyone the user would seem to recognize the user perfectly."""
    assert cfg.target is not None and cfg.target_protected is not None and cfg.background is not None
    v = cfg.victim
    pairs, only_clean, only_prot = match_folders(cfg.target, cfg.target_protected)
    if not pairs:
        raise ConfigError(f"{cfg.target_protected} shares no images with {cfg.target}")
    if (only_clean or only_prot) and not cfg.allow_missing:
        raise ConfigError(f"{cfg.target} and {cfg.target_protected} do not mirror each other "
                          f"({len(only_clean)} and {len(only_prot)} unmatched files); use --allow-missing")
    g = seeding.generator(v.seed, "holdout")
    order = torch.randperm(len(pairs), generator=g).tolist()
    n_hold = max(1, round(cfg.target_holdout * len(pairs)))
    hold, train_pairs = [pairs[i] for i in order[:n_hold]], [pairs[i] for i in order[n_hold:]]
    if not train_pairs:
        raise ConfigError(f"{cfg.target}: too few images to hold out {cfg.target_holdout:.0%} and still train")
    background = load_image_folder(cfg.background, v.image_size, cfg.per_class, loader=load)
    split = torch.randperm(len(background.labels), generator=g)
    n_test = max(1, len(split) // BACKGROUND_TEST_ONE_IN)
    bg_test, bg_train = split[:n_test], split[n_test:]
    target_class = len(background.class_names)
    train_y = torch.cat([background.labels[bg_train], torch.full((len(train_pairs),), target_class)])
    victims = [Victim(data, data, torch.cat([background.images[bg_train],
                                            load([pair[i] for pair in train_pairs])]),
                      train_y, 1.0 if data == "protected" else 0.0)
               for i, data in enumerate(("clean", "protected"))]
    evals = {"target": (load([c for c, _ in hold]), torch.full((len(hold),), target_class)),
             "background": (background.images[bg_test], background.labels[bg_test]),
             "false_alarm": (background.images[bg_test], torch.full((len(bg_test),), target_class))}
    settings = {"scenario": "personal-folder", "target": str(cfg.target),
                "target_protected": str(cfg.target_protected), "background": str(cfg.background),
                "metric": "recognition of held-out target images (%)",
                "target_train_images": len(train_pairs), "target_heldout_images": len(hold),
                "background_classes": len(background.class_names), "background_train_images": len(bg_train)}
    return Scenario(victims, evals, background.class_names + ["target"], {"target": imperceptibility(pairs)}, settings)


def run_evaluation(cfg: EvalConfig, device: torch.device,
                   progress: Progress = lambda label, epoch, total: None) -> EvalReport:
    """Evaluate as ``cfg`` says, reusing the finished victims of an interrupted run with
    the same ``cfg.report`` (and journaling new ones beside it); :func:`save_report`
    then writes the report and forgets the journal."""
    start = time.perf_counter()
    cfg.validate()
    settings = [Setting(r, defenses.parse(d)) for r in cfg.adv_radii for d in cfg.defenses]
    journal = RunJournal(journal_path(cfg.report) if cfg.report else None, Run)
    sc = (personal_scenario if cfg.personal else standard_scenario)(cfg, image_loader(cfg))
    recipe = (dataclasses.asdict(cfg.victim) if cfg.attacker is Attacker.SCRATCH
              else {"recognizer": dataclasses.asdict(cfg.recognizer)})
    identity = {"scenario": sc.settings.get("scenario", "standard"), "victim": recipe,
                "classes": sc.classes, "evals": data_digest(*[t for pair in sc.evals.values() for t in pair])}
    runs = train_victims(sc.victims, sc.evals, len(sc.classes), identity, cfg, settings, device, journal, progress)
    sc.settings.update(victim=recipe, conditions=[s.label for s in settings], device=str(device),
                       attacker=cfg.attacker.value)
    if cfg.attacker is not Attacker.SCRATCH:
        sc.settings["photos_without_face"] = without_face(sc)
    return EvalReport(sc.settings, runs, sc.imperceptibility, time.perf_counter() - start, journal.reused)


def without_face(sc: Scenario) -> dict[str, int]:
    """Photos in which the recognizer finds no face, per training set and eval set."""
    from ..faces.enrol import has_face
    counts = {f"train {v.name}": int((~has_face(v.images)).sum()) for v in sc.victims}
    counts.update({name: int((~has_face(x)).sum()) for name, (x, _) in sc.evals.items() if name != "false_alarm"})
    return counts


def save_report(report: EvalReport, cfg: EvalConfig) -> None:
    """Write ``cfg.report`` (if any) and remove the journal of finished victims it replaces."""
    if cfg.report:
        report.write(cfg.report)
        journal_path(cfg.report).unlink(missing_ok=True)
