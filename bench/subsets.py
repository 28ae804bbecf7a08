"""The benchmarks' one subset helper: folders of symlinks into ../shared/data, made once.

- :func:`link_files` / :func:`link_folders`: a class-folder tree of symlinks (idempotent);
- :func:`cifar_per_class`: the first N images of each CIFAR-10 class;
- :func:`lfw10_split` / :func:`materialize`: the LFW-10 split (the SEM paper's Table 8
  protocol on LFW: the 10 identities with the most photos, at most 120 each, 85/15).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from common import SHARED

CIFAR = SHARED / "cifar10"
LFW = SHARED / "lfw"


def link_files(dest: Path, files: dict[str, list[Path]]) -> Path:
    """``dest/<class>/<file name>`` -> each file, for every class; existing links are kept."""
    for cls, paths in files.items():
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in paths:
            link = dest / cls / f.name
            if not link.is_symlink():
                link.symlink_to(Path(f).resolve())
    return dest


def link_folders(dest: Path, sources: dict[str, Path]) -> Path:
    """``dest/<name>`` -> each source folder; existing links are kept."""
    for name, src in sources.items():
        if not (dest / name).is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(src.resolve(), target_is_directory=True)
    return dest


def cifar_per_class(split: str, per_class: int) -> dict[str, list[Path]]:
    """The first ``per_class`` files (by name) of each CIFAR-10 class of ``split`` (train/test)."""
    return {d.name: sorted(d.iterdir())[:per_class] for d in sorted((CIFAR / split).iterdir()) if d.is_dir()}


IDENTITIES = 10        # the identities with the most photos
MAX_PER_IDENTITY = 120  # as in the paper's FaceScrub 10x120
TRAIN_FRACTION = 0.85
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _order(seed: int, identity: str, names: list[str]) -> list[str]:
    """A seeded permutation of ``names`` keyed by (seed, identity): stable everywhere."""
    def key(name: str) -> str:
        return hashlib.sha256(f"{seed}\x1f{identity}\x1f{name}".encode()).hexdigest()
    return sorted(names, key=key)


def lfw10_split(lfw: Path = LFW, seed: int = 0, identities: int = IDENTITIES,
                max_per_identity: int = MAX_PER_IDENTITY,
                train_fraction: float = TRAIN_FRACTION) -> dict[str, dict[str, list[str]]]:
    """``{"train": {identity: [file names]}, "test": {...}}`` for the top identities.

    Train and test are disjoint by construction (one permutation, cut once).
    """
    people = {d.name: sorted(f.name for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                             and not f.name.startswith("."))
              for d in sorted(Path(lfw).iterdir()) if d.is_dir() and not d.name.startswith(".")}
    top = sorted(people, key=lambda p: (-len(people[p]), p))[:identities]
    split: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for person in sorted(top):
        chosen = _order(seed, person, people[person])[:max_per_identity]
        n_train = round(train_fraction * len(chosen))
        split["train"][person] = sorted(chosen[:n_train])
        split["test"][person] = sorted(chosen[n_train:])
    return split


def materialize(split: dict[str, dict[str, list[str]]], dest: Path, lfw: Path = LFW) -> Path:
    """Symlink the split into ``dest/{train,test}/<identity>/``; returns ``dest``."""
    for part, people in split.items():
        link_files(dest / part, {person: [Path(lfw) / person / name for name in files]
                                 for person, files in people.items()})
    (dest / "split.json").write_text(json.dumps(split, indent=1))
    return dest


# ---------------------------------------------------------------- the personal-folder scenario
#: The first personal users: the 3 identities with the most photos outside
#: LFW-10.  The 10 after them are the ``next10`` background; further users come after those
#: 10, so that measuring more people never changes the background.
FIRST_USERS = 3
#: Where the ``next10`` background sits in :func:`outside_lfw10`'s order.
NEXT10 = slice(FIRST_USERS, FIRST_USERS + 10)


def outside_lfw10() -> list[str]:
    """LFW identities outside LFW-10, most photos first (ties by name)."""
    people = {d.name: len([f for f in d.iterdir() if f.suffix.lower() == ".jpg"])
              for d in sorted(LFW.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    top10 = set(lfw10_split()["train"])
    return sorted((p for p in people if p not in top10), key=lambda p: (-people[p], p))


def personal_identities(n: int) -> list[str]:
    """The ``n`` users: the first :data:`FIRST_USERS` outside LFW-10, then those after ``next10``."""
    people = outside_lfw10()
    return (people[:NEXT10.start] + people[NEXT10.stop:])[:n]


def background_identities(kind: str, person: str) -> dict[str, Path]:
    """Everyone else: ``all`` the other 157 LFW identities, the ``lfw10`` identities (the ``faces``
    generator's own classes), or ``next10``: the 10 identities with the most photos after LFW-10 and
    the first three users, none of whom any shipped generator was trained on."""
    if kind == "lfw10":
        return {p: LFW / p for p in sorted(lfw10_split()["train"])}
    if kind == "next10":
        return {p: LFW / p for p in outside_lfw10()[NEXT10]}
    return {d.name: d for d in sorted(LFW.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name != person}


def unbenchmarked_identities(users: int = 11, background: str = "next10") -> list[str]:
    """LFW identities no benchmark here uses (not LFW-10, not one of the ``users`` personal
    users, not the ``background`` block), sorted by name: the cloak's target bank and the
    transfer recognizer's training set are drawn from them."""
    used = set(lfw10_split()["train"]) | set(personal_identities(users)) | set(background_identities(background, ""))
    return sorted(p for p in outside_lfw10() if p not in used)


# ---------------------------------------------------------------- as a photo site serves them
def site_copy(src: Path, dst: Path, site: str) -> Path:
    """``src`` as a photo site would serve it: re-encoded as JPEG (``jpegQ``) or halved."""
    from PIL import Image
    if site == "none":
        return src
    import os
    files = [Path(d) / f for d, _, names in os.walk(src, followlinks=True) for f in names]  # linked folders too
    for path in sorted(p for p in files if p.is_file() and p.suffix.lower() in (".jpg", ".png")):
        out = dst / path.relative_to(src)
        out = out.with_suffix(".jpg" if site.startswith("jpeg") else ".png")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            img = img.convert("RGB")
            if site == "half":
                img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(out)
            else:
                img.save(out, quality=int(site.removeprefix("jpeg")))
    return dst
