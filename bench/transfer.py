"""Transfer: does the cloak fool a face recognizer it never saw?

The cloak (``protect --against recognizers|both``) is optimized against dlib's network
alone.  Here a second face-embedding network is trained from scratch on this machine, on
the LFW identities no benchmark uses (:func:`subsets.unbenchmarked_identities`, every photo
of each: the people of the cloak's target bank, whose centroids it knows nothing of), with
an ArcFace loss (Deng et al., CVPR 2019: an additive angular margin on normalized
descriptors).  It sees dlib's face chips, as the enrolment attacker does, resized to
:data:`SIZE` px.  Then it enrols LFW-10's training photos, clean and each protected copy,
and names the clean held-out photos: 1-NN (no threshold: the nearest enrolled descriptor)
and a logistic regression on its descriptors, as ``eval --attacker embedding`` does with
dlib's.

    python bench/transfer.py train          # about 10 min here; weights in bench/work/transfer/
    python bench/transfer.py lfw10 --names faces,both,cloak
    python bench/recognizers.py summary     # the table goes to results/recognizers.md

Every number goes to ``results/recognizers.json`` (scenario ``transfer``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import WORK, record
from subsets import LFW, unbenchmarked_identities

FACES = WORK / "faces"
HERE = WORK / "transfer"
# ---------------------------------------------------------------- every hyperparameter, in one place
SIZE = 112            # chips (dlib's 150 px) are resized to this before the network
WIDTH = 16            # ResNet-18 width (the project's, stem stride 2); its 128 outputs are the descriptor
EPOCHS = 40
BATCH = 64
LR = 0.1              # SGD, momentum 0.9, cosine schedule to 0, weight decay below
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
MARGIN = 0.3          # ArcFace's additive angle (rad); smaller than the paper's 0.5 for 127 identities
SCALE = 30.0          # ArcFace's logit scale
SEED = 0
TAG = ""              # --tag: a second network's files and records (e.g. another --margin)


def photos_in(folder: Path) -> list[Path]:
    """The photos of ``folder``'s person subfolders (linked subfolders too), sorted."""
    return sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".png") and p.is_file())


def chips_of(files: list[Path], cache: Path) -> tuple[torch.Tensor, list[str]]:
    """uint8 chips (N, 3, 150, 150) of ``files`` and each one's person (its folder's name);
    cached as an .npz (no pickle), since detection is slow."""
    from unlearnable_cli.faces.enrol import load_chips
    if cache.exists():
        with np.load(cache) as z:
            return torch.from_numpy(z["chips"]), [str(p) for p in z["people"]]
    chips = load_chips(files)
    people = [p.parent.name for p in files]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, chips=chips.numpy(), people=np.array(people))
    tmp.replace(cache)
    return chips, people


def network() -> nn.Module:
    from unlearnable_cli.models.architectures import ResNet18
    return ResNet18(num_classes=128, width=WIDTH, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), stem_stride=2)


def prepare(chips_u8: torch.Tensor) -> torch.Tensor:
    """uint8 chips -> the network's input: float in [0, 1] at :data:`SIZE` px."""
    return F.interpolate(chips_u8.float() / 255, size=(SIZE, SIZE), mode="bilinear", antialias=True,
                         align_corners=False)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and shifts of up to 8 px (reflect-padded), vectorized over the batch."""
    n = len(x)
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = 8
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dx, dy = (torch.randint(0, 2 * pad + 1, (n,), generator=g) for _ in range(2))
    rows = (dy[:, None] + torch.arange(SIZE))[:, None, :, None].expand(n, 3, SIZE, SIZE + 2 * pad)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(SIZE))[:, None, None, :].expand(n, 3, SIZE, SIZE)
    return x.gather(3, cols)


def arcface_logits(emb: torch.Tensor, weight: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s · cos(θ + m) for the true class, s · cos θ for the others (θ: angle to each class)."""
    cos = F.normalize(emb) @ F.normalize(weight).T
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    margin = F.one_hot(y, weight.shape[0]).to(cos) * MARGIN
    return SCALE * torch.cos(theta + margin)


def train() -> Path:
    from safetensors.torch import save_file
    out = HERE / f"net{TAG}.safetensors"
    people = unbenchmarked_identities()
    chips, owners = chips_of_people(people)
    keep = chips.flatten(1).ne(0).any(1)
    x = prepare(chips[keep])
    names = sorted(set(o for o, k in zip(owners, keep.tolist()) if k))
    y = torch.tensor([names.index(o) for o, k in zip(owners, keep.tolist()) if k])
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    net = network()
    weight = nn.Parameter(torch.randn(len(names), 128) * 0.01)
    params = list(net.parameters()) + [weight]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    start = time.time()
    for epoch in range(EPOCHS):
        net.train()
        order = torch.randperm(len(x), generator=g)
        total, right = 0.0, 0
        for idx in order.split(BATCH):
            emb = net(augment(x[idx], g))
            logits = arcface_logits(emb, weight, y[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            right += int((F.normalize(emb) @ F.normalize(weight).T).argmax(1).eq(y[idx]).sum())
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / len(x):.3f}, train acc {100 * right / len(x):.1f}%, "
              f"{time.time() - start:.0f} s", flush=True)
    HERE.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    record("recognizers", f"transfer-net{TAG}", {
        "scenario": "transfer-net", "identities": len(names), "photos": len(x), "faceless": int((~keep).sum()),
        "settings": {"size": SIZE, "width": WIDTH, "epochs": EPOCHS, "batch": BATCH, "lr": LR,
                     "margin": MARGIN, "scale": SCALE, "seed": SEED},
        "final_train_acc": round(100 * right / len(x), 1), "seconds": round(time.time() - start, 1)},
        command=f"python bench/transfer.py train --margin {MARGIN}" + (f" --tag {TAG}" if TAG else ""))
    return out


def chips_of_people(people: list[str]) -> tuple[torch.Tensor, list[str]]:
    return chips_of([f for p in people for f in sorted((LFW / p).glob("*.jpg"))], HERE / "chips-people.npz")


def load_network() -> nn.Module:
    from safetensors.torch import load_file
    net = network()
    net.load_state_dict(load_file(str(HERE / f"net{TAG}.safetensors")))
    return net.eval()


class Descriptor(nn.Module):
    """The trained network as a recognizer: uint8-scaled chips in [0, 1] -> unit descriptors."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(chips, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.net(x))


def lfw10(names: list[str]) -> None:
    """Enrol LFW-10's training photos (clean, and each protected copy) with the second
    network; recognize the clean held-out photos."""
    from unlearnable_cli.config.evaluate import RecognizerConfig
    from unlearnable_cli.evaluate.recognizers import enrol
    split = FACES / "lfw10"
    test_x, test_p = chips_of(photos_in(split / "test"), HERE / "chips-lfw10-test.npz")
    classes = sorted(set(test_p))
    ty = torch.tensor([classes.index(p) for p in test_p])
    net = Descriptor(load_network())
    cfg = RecognizerConfig(match_threshold=float("inf"))       # 1-NN with no threshold
    device = torch.device("cpu")
    runs = []
    for name, folder in [("clean", split / "train")] + [(n, FACES / f"protected-{n}") for n in names]:
        x, p = chips_of(photos_in(folder), HERE / f"chips-lfw10-{name}.npz")
        y = torch.tensor([classes.index(q) for q in p])
        for variant in ("embedding:1nn", "embedding:linear"):
            trained = enrol(net, x, y, {"test": (test_x, ty)}, len(classes), cfg, variant, device)
            acc = trained.history["test"][-1]
            runs.append({"data": name, "attacker": variant, "final_acc": acc,
                         "train_faces": int(x.flatten(1).ne(0).any(1).sum()), "train_photos": len(x)})
            print(f"{name} {variant}: {acc:.1f}%", flush=True)
    record("recognizers", f"transfer{TAG}-lfw10-{'+'.join(names)}", {
        "scenario": "transfer", "network": f"transfer-net{TAG}", "settings": {"test_images": len(ty),
                                             "test_faces": int(test_x.flatten(1).ne(0).any(1).sum())},
        "runs": runs}, command=f"python bench/transfer.py lfw10 --names {','.join(names)}" + (f" --tag {TAG}" if TAG else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("train", "lfw10"))
    ap.add_argument("--names", default="faces,both,cloak", help="lfw10: protected copies (faces.py protect --name)")
    ap.add_argument("--margin", type=float, default=MARGIN, help="ArcFace's margin (0: a normalized softmax)")
    ap.add_argument("--tag", default="", help="name suffix of this network's weights and records")
    args = ap.parse_args()
    globals().update(MARGIN=args.margin, TAG=args.tag)
    if args.stage == "train":
        train()
    else:
        lfw10(args.names.split(","))


if __name__ == "__main__":
    main()
