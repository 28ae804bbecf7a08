"""Does protection work?  Train fresh victims the way an unauthorized trainer would.

One entry point, :func:`evaluate`: for every setting (adversarial-training radius ×
defense) a victim is trained on the clean images and one on each protected copy,
with the same seed and recipe, and its clean test accuracy is recorded per epoch.
The personal-folder scenario instead adds the user's images as one extra class to a
background data set and reports how well the held-out user images are recognized.

Victims see the whole training set as one tensor; augmentation (pad-4 crop + flip),
per-batch defenses and PGD are batched.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import __version__, defenses, seeding, transforms
from .attacks import PGD, eval_mode
from .config import ConfigError, VictimRuns
from .data import DatasetError, load_files, load_image_folder, to_device
from .imageio import OutputFormat, find_images, read_image
from .journal import RunJournal, run_key, tensor_digest
from .metrics import psnr, ssim_batch
from .models import CIFAR_MEAN, CIFAR_STD, build_model

Progress = Callable[[str, int, int], None]
#: What ``protect`` appends to an input's name (``a.jpg`` -> ``a.png`` or ``a.webp``).
PROTECT_SUFFIXES = tuple(f.suffix for f in OutputFormat)


@dataclass
class VictimConfig:
    """How the unauthorized trainer trains (``--preset quick`` defaults)."""

    arch: str = "convnet"
    width: int = 32
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 32
    augment: bool = True                    # pad-4 random crop + horizontal flip
    adv_steps: int = 3                      # Madry PGD steps when --adv-radius > 0
    adv_step_size: float | None = None      # default 2.5 * radius / steps
    seed: int = 0


#: ``quick``: a fast CNN for a 10k-image subset on a 2-core CPU; ``paper``: the SEM/REM
#: victim protocol (ResNet-18, SGD 0.1, wd 5e-4, crop+flip, 100 epochs, PGD-10), for a GPU.
EVAL_PRESETS: dict[str, dict[str, object]] = {
    "quick": {},
    "paper": dict(arch="resnet18", width=64, epochs=100, lr=0.1, adv_steps=10),
}


@dataclass
class Setting:
    """One evaluation condition: adversarial-training radius (levels) and defense."""

    adv_radius: float
    defense: defenses.Defense

    @property
    def label(self) -> str:
        adv = f"adv {self.adv_radius:g}/255" if self.adv_radius else "standard"
        return adv if self.defense.name == "none" else f"{adv} + {self.defense.label}"


@dataclass
class Run:
    """One trained victim."""

    data: str                     # "clean" or "protected"
    name: str                     # protected copy's name ("clean" for clean runs)
    adv_radius: float             # levels out of 255
    defense: str
    acc_per_epoch: list[float]    # percent
    seconds: float
    poison_ratio: float = 1.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def final_acc(self) -> float:
        return self.acc_per_epoch[-1]

    @property
    def best_acc(self) -> float:
        return max(self.acc_per_epoch)

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(final_acc=self.final_acc, best_acc=self.best_acc, best_epoch=self.acc_per_epoch.index(self.best_acc) + 1)
        d.update(extra)
        return d


# --------------------------------------------------------------------------- folders
def _key(rel: str) -> str:
    """Relative path without its extension (protect writes ``a.png`` for ``a.jpg``)."""
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def match_folders(clean_dir: Path, protected_dir: Path) -> tuple[list[tuple[Path, Path]], list[str], list[str]]:
    """Pair clean and protected files by relative path, extension aside.

    ``a.jpg.png`` (protect's name when ``a.jpg`` and ``a.png`` both exist) pairs with
    ``a.jpg``; so do ``a.webp`` and ``a.jpg.webp`` (``protect --format webp``).  Returns (pairs, only in clean, only in protected).
    """
    clean = {p.relative_to(clean_dir).as_posix(): p for p in find_images(clean_dir)}
    prot = {p.relative_to(protected_dir).as_posix(): p for p in find_images(protected_dir)}
    by_key: dict[str, list[str]] = defaultdict(list)
    for rel in clean:
        by_key[_key(rel)].append(rel)
    pairs, used = [], set()
    for rel, path in sorted(prot.items()):
        stem = next((rel[:-len(sfx)] for sfx in PROTECT_SUFFIXES if rel.lower().endswith(sfx)), rel)
        match = stem if stem in clean else (by_key[_key(rel)][0] if len(by_key[_key(rel)]) == 1 else None)
        if match is not None and match not in used:
            used.add(match)
            pairs.append((clean[match], path))
    only_clean = sorted(set(clean) - used)
    only_prot = sorted(set(prot) - {p.relative_to(protected_dir).as_posix() for _, p in pairs})
    return pairs, only_clean, only_prot


def class_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        raise DatasetError(f"{path}: expected <root>/<class>/<image> (image-folder layout)")
    return parts[0]


def load_pairs(clean_dir: Path, protected_dir: Path, image_size: int, allow_missing: bool,
               per_class: int | None = None, load_protected: bool = True,
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[str], list[tuple[Path, Path]]]:
    """Matched (clean uint8, protected uint8, labels, class names, pairs); clear errors on mismatch."""
    for d in (clean_dir, protected_dir):
        if not Path(d).is_dir():
            raise ConfigError(f"{d}: not a folder")
    pairs, only_clean, only_prot = match_folders(clean_dir, protected_dir)
    if not pairs:
        raise ConfigError(f"{protected_dir} shares no images with {clean_dir} (expected the output of "
                          "`unlearnable protect` on that folder)")
    if (only_clean or only_prot) and not allow_missing:
        shown = [f"only in {clean_dir}: {r}" for r in only_clean[:5]] + [f"only in {protected_dir}: {r}" for r in only_prot[:5]]
        raise ConfigError(f"the folders do not mirror each other ({len(only_clean)} only in the clean folder, "
                          f"{len(only_prot)} only in the protected one): " + "; ".join(shown) +
                          " (use --allow-missing to evaluate the matched images only)")
    names = sorted({class_of(c, clean_dir) for c, _ in pairs})
    if len(names) < 2:
        raise ConfigError(f"{clean_dir}: needs at least two class folders")
    if per_class:
        counts: dict[str, int] = defaultdict(int)
        kept = []
        for c, p in pairs:
            cls = class_of(c, clean_dir)
            if counts[cls] < per_class:
                counts[cls] += 1
                kept.append((c, p))
        pairs = kept
    labels = torch.tensor([names.index(class_of(c, clean_dir)) for c, _ in pairs])
    clean = load_files([c for c, _ in pairs], image_size)
    prot = load_files([p for _, p in pairs], image_size) if load_protected else None
    return clean, prot, labels, names, pairs


def load_test(test_dir: Path, names: list[str], image_size: int, per_class: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    files, labels = [], []
    for i, name in enumerate(names):
        found = find_images(Path(test_dir) / name)
        found = found[:per_class] if per_class else found
        files += found
        labels += [i] * len(found)
    if not files:
        raise ConfigError(f"{test_dir}: no test images in class folders {', '.join(names)}")
    return load_files(files, image_size), torch.tensor(labels)


# --------------------------------------------------------------------------- imperceptibility
def imperceptibility(pairs: list[tuple[Path, Path]]) -> dict[str, float]:
    """L∞ (levels), PSNR (dB) and SSIM between each protected file and its clean original, full size."""
    by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
    linf, psnrs = [], []
    for clean_path, prot_path in pairs:
        a = torch.from_numpy(read_image(clean_path).pixels).permute(2, 0, 1)
        b = torch.from_numpy(read_image(prot_path).pixels).permute(2, 0, 1)
        if a.shape[0] != b.shape[0]:          # grayscale kept as RGB by lossless WebP
            a, b = a.expand(3, -1, -1), b.expand(3, -1, -1)
        if a.shape != b.shape:
            raise ConfigError(f"{prot_path}: size {tuple(b.shape[1:])} differs from {clean_path} {tuple(a.shape[1:])}")
        linf.append(int((a.int() - b.int()).abs().max()))
        p = psnr(a, b)
        psnrs.append(p if p is not None else math.inf)
        by_shape[tuple(a.shape)].append((a, b))
    ssims: list[float] = []
    for group in by_shape.values():
        for start in range(0, len(group), 256):
            chunk = group[start:start + 256]
            ssims += ssim_batch(torch.stack([a for a, _ in chunk]), torch.stack([b for _, b in chunk])).tolist()
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"images": len(pairs), "linf_mean": sum(linf) / len(linf), "linf_max": max(linf),
            "psnr_mean": sum(finite) / max(1, len(finite)), "psnr_min": min(finite, default=math.inf),
            "ssim_mean": sum(ssims) / len(ssims), "ssim_min": min(ssims)}


# --------------------------------------------------------------------------- victims
@torch.no_grad()
def test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    with eval_mode(model):
        correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                      for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)


def train_victim(train_x: torch.Tensor, train_y: torch.Tensor, evals: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 num_classes: int, cfg: VictimConfig, setting: Setting, device: torch.device,
                 on_epoch: Callable[[int], None] = lambda epoch: None) -> dict[str, list[float]]:
    """Train one victim from scratch; returns the accuracy (%) on each named eval set per epoch.

    ``evals`` maps a name to (uint8 images, labels); a test-time defense (grayscale)
    is applied to them too.
    """
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, num_classes, width=cfg.width, mean=CIFAR_MEAN, std=CIFAR_STD)
    model = model.to(device, memory_format=torch.channels_last)
    steps_per_epoch = max(1, len(train_y) // cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15, anneal_strategy="linear")
    x_all = to_device(train_x, device)
    if setting.defense.name in defenses.ONCE:
        x_all = defenses.apply_once(setting.defense, x_all)
    eval_sets = {}
    for name, (ex, ey) in evals.items():
        ex = to_device(ex, device)
        eval_sets[name] = (defenses.apply_once(setting.defense, ex) if setting.defense.applies_to_test else ex,
                           ey.to(device))
    y_all = train_y.to(device)
    batch_defense = defenses.BatchDefense(setting.defense) if setting.defense.name in defenses.PER_BATCH else None
    radius = setting.adv_radius / 255
    step = cfg.adv_step_size / 255 if cfg.adv_step_size else 2.5 * radius / max(1, cfg.adv_steps)
    attack = PGD(model, radius, step, cfg.adv_steps) if radius > 0 else None
    spec = transforms.TransformSpec(pad=4, flip=True) if cfg.augment else transforms.TransformSpec.identity()
    size = (cfg.image_size, cfg.image_size)
    history: dict[str, list[float]] = {name: [] for name in evals}
    for epoch in range(cfg.epochs):
        g = seeding.generator(cfg.seed, "victim-epoch", epoch)
        perm = torch.randperm(len(y_all), generator=g).to(device)
        model.train()
        for k in range(steps_per_epoch):
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            x = transforms.apply(x_all[idx], transforms.sample_params(spec, len(idx), size, size, g, device))
            y = y_all[idx]
            batch = (batch_defense(x, y, g) if batch_defense
                     else defenses.MixedBatch(x, y, y, torch.ones(len(y), device=device)))
            inputs = attack(batch.images, y, g) if attack else batch.images
            loss = batch.loss(model(inputs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        for name, (ex, ey) in eval_sets.items():
            history[name].append(test_accuracy(model, ex, ey))
        on_epoch(epoch + 1)
    return history


# --------------------------------------------------------------------------- entry point
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


def mix(clean: torch.Tensor, protected: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """Training set where a seeded ``ratio`` of the images are protected, the rest clean."""
    if ratio >= 1:
        return protected
    n = len(clean)
    chosen = torch.randperm(n, generator=seeding.generator(seed, "poison"))[: round(ratio * n)]
    out = clean.clone()
    out[chosen] = protected[chosen]
    return out


def evaluate(clean_dir: Path, protected: dict[str, Path], test_dir: Path, cfg: VictimConfig,
             settings: list[Setting], device: torch.device, per_class: int | None = None,
             test_per_class: int | None = None, poison_ratio: float = 1.0, allow_missing: bool = False,
             runs_wanted: VictimRuns = VictimRuns.BOTH, journal: RunJournal[Run] | None = None,
             progress: Progress = lambda label, epoch, total: None) -> EvalReport:
    """Train clean and protected victims for every setting; see the module docstring.

    ``runs_wanted`` trains only the clean baseline or only the protected copies (their
    results are comparable across calls: same seed and recipe give the same victim);
    with only the clean baseline, ``protected`` may be empty and ``clean_dir`` alone is read.
    Victims already in ``journal`` (an interrupted run's) are reused, new ones recorded.
    """
    start = time.perf_counter()
    journal = journal or RunJournal(None, Run)
    if runs_wanted is not VictimRuns.CLEAN and not protected:
        raise ConfigError("no protected folder given")
    data = {}
    names: list[str] = []
    clean_u8 = labels = None
    quality = {}
    if not protected:
        clean_u8, _, labels, names, _ = load_pairs(clean_dir, clean_dir, cfg.image_size, allow_missing, per_class,
                                                   load_protected=False)
    for name, prot_dir in protected.items():
        c, p, y, n, pairs = load_pairs(clean_dir, prot_dir, cfg.image_size, allow_missing, per_class)
        if clean_u8 is not None and not torch.equal(y, labels):
            raise ConfigError(f"{prot_dir}: matches a different set of images than the other protected folders")
        clean_u8, labels, names = c, y, n
        data[name] = mix(c, p, poison_ratio, cfg.seed)
        quality[name] = imperceptibility(pairs)
    assert clean_u8 is not None and labels is not None
    test_x, test_y = load_test(test_dir, names, cfg.image_size, test_per_class)
    todo = [("clean", "clean", clean_u8)] if runs_wanted is not VictimRuns.PROTECTED else []
    if runs_wanted is not VictimRuns.CLEAN:
        todo += [("protected", k, v) for k, v in data.items()]
    identity = {"victim": dataclasses.asdict(cfg), "classes": names, "test": tensor_digest(test_x, test_y)}
    train_ids = {(data_name, name): tensor_digest(x, labels) for data_name, name, x in todo}
    runs: list[Run] = []
    for setting in settings:
        for data_name, name, x in todo:
            def train() -> Run:           # called at once, inside this iteration
                t0 = time.perf_counter()
                label = f"{setting.label}: {name}"
                accs = train_victim(x, labels, {"test": (test_x, test_y)}, len(names), cfg, setting, device,
                                    on_epoch=lambda e: progress(label, e, cfg.epochs))["test"]
                return Run(data_name, name, setting.adv_radius, setting.defense.label, accs,
                           round(time.perf_counter() - t0, 1), poison_ratio if data_name == "protected" else 0.0)
            key = run_key(**identity, adv_radius=setting.adv_radius, defense=setting.defense.label,
                          data=data_name, name=name, train=train_ids[data_name, name],
                          poison_ratio=poison_ratio if data_name == "protected" else 0.0)
            runs.append(journal.run(key, train))
    report_settings = {"victim": dataclasses.asdict(cfg), "clean": str(clean_dir),
                       "protected": {k: str(v) for k, v in protected.items()}, "test": str(test_dir),
                       "per_class": per_class, "test_per_class": test_per_class, "poison_ratio": poison_ratio,
                       "train_images": len(labels), "test_images": len(test_y), "classes": names,
                       "conditions": [s.label for s in settings], "runs": runs_wanted.value,
                       "device": str(device)}
    return EvalReport(report_settings, runs, quality, time.perf_counter() - start, journal.reused)


def evaluate_personal(target_dir: Path, target_protected: Path, background_dir: Path, cfg: VictimConfig,
                      settings: list[Setting], device: torch.device, holdout: float = 0.2,
                      background_per_class: int | None = None, allow_missing: bool = False,
                      journal: RunJournal[Run] | None = None,
                      progress: Progress = lambda label, epoch, total: None) -> EvalReport:
    """The user's images as one extra class among a background data set.

    A seeded ``holdout`` fraction of the user's clean images is never trained on;
    ``final_acc`` is the percentage of them the victim recognizes as the user's class,
    ``background_acc`` the accuracy on a held-out 10% of the background.  Victims
    already in ``journal`` are reused, as in :func:`evaluate`.
    """
    start = time.perf_counter()
    journal = journal or RunJournal(None, Run)
    pairs, only_clean, only_prot = match_folders(target_dir, target_protected)
    if not pairs:
        raise ConfigError(f"{target_protected} shares no images with {target_dir}")
    if (only_clean or only_prot) and not allow_missing:
        raise ConfigError(f"{target_dir} and {target_protected} do not mirror each other "
                          f"({len(only_clean)} and {len(only_prot)} unmatched files); use --allow-missing")
    g = seeding.generator(cfg.seed, "holdout")
    order = torch.randperm(len(pairs), generator=g).tolist()
    n_hold = max(1, round(holdout * len(pairs)))
    hold, train_pairs = [pairs[i] for i in order[:n_hold]], [pairs[i] for i in order[n_hold:]]
    if not train_pairs:
        raise ConfigError(f"{target_dir}: too few images to hold out {holdout:.0%} and still train")
    background = load_image_folder(Path(background_dir), cfg.image_size, background_per_class)
    bg_classes, bg_x, bg_y = background.class_names, background.images, background.labels
    split = torch.randperm(len(bg_y), generator=g)
    n_test = max(1, len(bg_y) // 10)
    bg_test, bg_train = split[:n_test], split[n_test:]
    target_class = len(bg_classes)
    clean_t = load_files([c for c, _ in train_pairs], cfg.image_size)
    prot_t = load_files([p for _, p in train_pairs], cfg.image_size)
    hold_x = load_files([c for c, _ in hold], cfg.image_size)
    hold_y = torch.full((len(hold),), target_class)
    evals = {"target": (hold_x, hold_y), "background": (bg_x[bg_test], bg_y[bg_test])}
    train_y = torch.cat([bg_y[bg_train], torch.full((len(train_pairs),), target_class)])
    identity = {"scenario": "personal-folder", "victim": dataclasses.asdict(cfg),
                "evals": tensor_digest(*[t for pair in evals.values() for t in pair])}
    targets = {"clean": clean_t, "protected": prot_t}
    train_ids = {name: tensor_digest(bg_x[bg_train], t, train_y) for name, t in targets.items()}
    runs: list[Run] = []
    for setting in settings:
        for data_name, target_x in targets.items():
            def train() -> Run:           # called at once, inside this iteration
                t0 = time.perf_counter()
                label = f"{setting.label}: {data_name} target"
                history = train_victim(torch.cat([bg_x[bg_train], target_x]), train_y, evals, target_class + 1,
                                       cfg, setting, device,
                                       on_epoch=lambda e: progress(label, e, cfg.epochs))
                return Run(data_name, data_name, setting.adv_radius, setting.defense.label, history["target"],
                           round(time.perf_counter() - t0, 1),
                           extra={"metric": "recognition of held-out target images (%)",
                                  "background_acc_per_epoch": history["background"],
                                  "background_acc": history["background"][-1]})
            key = run_key(**identity, adv_radius=setting.adv_radius, defense=setting.defense.label,
                          data=data_name, train=train_ids[data_name])
            runs.append(journal.run(key, train))
    report_settings = {"victim": dataclasses.asdict(cfg), "scenario": "personal-folder", "target": str(target_dir),
                       "target_protected": str(target_protected), "background": str(background_dir),
                       "target_train_images": len(train_pairs), "target_heldout_images": len(hold),
                       "background_classes": len(bg_classes), "background_train_images": len(bg_train),
                       "conditions": [s.label for s in settings], "device": str(device)}
    return EvalReport(report_settings, runs, {"target": imperceptibility(pairs)}, time.perf_counter() - start,
                      journal.reused)
