"""Photo benchmark (issue 29): protection measured on face photos, where users live.

This first part fixes the data: LFW-10, the SEM paper's Table 8 protocol transposed to
LFW. The 10 identities of ``../shared/data/lfw`` with the most photos (ties by name),
at most 120 photos each (a seeded sample), split per identity 85/15 into train and test
by a seeded permutation. The split depends only on the file names and the seed, never
on the order the file system lists them, so it is the same on every machine.

    python bench/photos.py split [--work bench/work/photos]

materializes ``WORK/lfw10/{train,test}/<identity>/<file>`` as symlinks into
``../shared/data/lfw`` (nothing is copied; ``bench/work/`` is not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw"
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
        for person, files in people.items():
            folder = dest / part / person
            folder.mkdir(parents=True, exist_ok=True)
            for name in files:
                link = folder / name
                if not link.is_symlink():
                    link.symlink_to(Path(lfw).resolve() / person / name)
    (dest / "split.json").write_text(json.dumps(split, indent=1))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["split"])
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "photos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not LFW.is_dir():
        raise SystemExit(f"{LFW}: LFW is not there (see ../shared/README.md)")
    split = lfw10_split(seed=args.seed)
    dest = materialize(split, args.work / "lfw10")
    counts = {part: sum(map(len, people.values())) for part, people in split.items()}
    print(f"{dest}: {counts['train']} train and {counts['test']} test photos of {len(split['train'])} identities")


if __name__ == "__main__":
    main()
