"""Recognizers benchmark: does protection hold against dlib's pretrained face recognizer?

The attackers a person meets (``unlearnable eval --attacker``, needs the faces extra):
``embedding`` (dlib's descriptors of the training photos: 1-NN with face_recognition's
0.6 threshold, and a logistic regression) and ``finetune`` (the network with a new linear
head: the head alone, and the whole network).  Measured on clean held-out photos, with
counts and 95% intervals, in the two scenarios of ``bench/faces.py``:

- **LFW-10**: the split's training photos, protected at full size by ``faces.py protect``
  (``bench/work/faces/protected-NAME``), against the same photos clean;
- **personal folder**: each of ``--identities`` users (``subsets.personal_identities``)
  among the ``next10`` background, their photos protected here, ``--holdout`` of them never
  trained on; reported: how often the recognizer names them on their held-out photos, and
  beside it its accuracy on everyone else and how often it calls them the user.

    python bench/faces.py protect --weights faces && python bench/faces.py protect --weights cifar10
    python bench/recognizers.py lfw10 --names faces,cifar10 [--attackers embedding,finetune]
    python bench/recognizers.py personal --name faces --weights faces --identities 11 [--attackers embedding] [--site jpeg90]
    python bench/recognizers.py summary

Each eval call's report is cached under ``bench/work/recognizers/`` and recorded in
``results/recognizers.json``; ``summary`` writes ``results/recognizers.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from common import ROOT, WORK, cli, load, record, table, write_markdown
from subsets import (LFW, background_identities, lfw10_split, link_folders, outside_lfw10, personal_identities,
                     site_copy, unbenchmarked_identities)

FACES = WORK / "faces"            # faces.py's split and protected copies
HERE = WORK / "recognizers"
#: The personal scenario's settings, as in faces.py's personal runs.
HOLDOUT = 0.4
BACKGROUND = "next10"
PER_CLASS = 120


def _eval(key: str, args: list[object], about: dict) -> None:
    """Run one ``eval`` (unless its report exists) and record it under ``key``."""
    report = HERE / "parts" / f"{key}.json"
    args = ["eval", *args, "--report", report, "--quiet"]
    if not report.exists():
        cli(*args)
    d = json.loads(report.read_text())
    record("recognizers", key, {**about, **{k: d[k] for k in ("settings", "runs", "seconds")}},
           command="unlearnable " + " ".join(shlex.quote(str(a)) for a in args))


#: Photos per identity the bank's centroids average (the first, by name).
BANK_PHOTOS = 10


def bank(identities: int) -> None:
    """The cloak's target bank (``weights/face-targets.safetensors``): the descriptor
    centroid of each LFW identity outside every benchmark here."""
    import torch
    from unlearnable_cli.faces import load_face_net
    from unlearnable_cli.faces.enrol import has_face, load_chips
    from unlearnable_cli.faces.targets import BANK_FILE, save_bank
    from unlearnable_cli.evaluate.recognizers import embed
    people = unbenchmarked_identities(identities, BACKGROUND)
    used = sorted(set(outside_lfw10()) - set(people)) + sorted(lfw10_split()["train"])
    net, device = load_face_net(), torch.device("cpu")
    centroids, names, photos = [], [], 0
    for person in people:
        chips = load_chips(sorted((LFW / person).glob("*.jpg"))[:BANK_PHOTOS])
        chips = chips[has_face(chips)]
        if len(chips):
            centroids.append(embed(net, chips, device).mean(0))
            names.append(person)
            photos += len(chips)
    save_bank(ROOT / "weights" / BANK_FILE, torch.stack(centroids), names,
              f"LFW: {len(names)} identities outside LFW-10, the personal users and the {BACKGROUND} background; "
              f"{photos} photos, at most {BANK_PHOTOS} each; dlib descriptors by the torch port")
    record("recognizers", "bank", {"identities": len(names), "photos": photos, "excluded": sorted(used)},
           command="python bench/recognizers.py bank")


def lfw10(names: list[str], attackers: list[str], site: str) -> None:
    """The attackers on LFW-10's training photos, clean and each protected copy, as ``site``
    serves them (``none``: as saved; ``jpeg90``: re-encoded, both copies alike)."""
    split = FACES / "lfw10"
    clean = site_copy(split / "train", FACES / f"site-{site}" / "clean", site)
    copies = [f"--protected={n}={site_copy(FACES / f'protected-{n}', FACES / f'site-{site}' / n, site)}"
              for n in names]
    for attacker in attackers:
        _eval(f"lfw10-{attacker}-{'+'.join(names)}" + ("" if site == "none" else f"-{site}"),
              ["--clean", clean, *copies, "--test", split / "test", "--attacker", attacker],
              {"scenario": "lfw10", "attacker": attacker, "site": site})


def personal(name: str, weights: str, identities: int, attackers: list[str], extra: list[str], site: str) -> None:
    """Each user's photos protected, then every photo (the user's clean and protected ones
    and the background) as ``site`` serves them."""
    for person in personal_identities(identities):
        base = FACES / "personal" / person
        me = link_folders(base / "me", {person: LFW / person})
        background = link_folders(base / f"background-{BACKGROUND}", background_identities(BACKGROUND, person))
        me_prot = base / f"me-{name}"
        cli("protect", me, "-o", me_prot, "--weights", weights, "--quiet", *extra)
        served = base / f"site-{site}"
        me, me_prot, background = (site_copy(d, served / d.name, site) for d in (me, me_prot, background))
        for attacker in attackers:
            _eval(f"personal-{person}-{name}-{attacker}" + ("" if site == "none" else f"-{site}"),
                  ["--target", me, "--target-protected", me_prot, "--background", background,
                   "--per-class", PER_CLASS, "--target-holdout", HOLDOUT, "--attacker", attacker],
                  {"scenario": "personal", "identity": person, "generator": name, "attacker": attacker,
                   "site": site})


def timing() -> None:
    """Seconds for one 1-megapixel face photo (the bundled astronaut at 1000x1000) through
    ``protect`` with each ``--against``, each in a fresh process (imports included)."""
    import tempfile
    from PIL import Image
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in" / "me" / "astronaut.jpg"
        src.parent.mkdir(parents=True)
        with Image.open(ROOT / "examples" / "photos" / "people" / "astronaut.jpg") as im:
            im.convert("RGB").resize((1000, 1000), Image.Resampling.BICUBIC).save(src, quality=92)
        seconds = {against: round(cli("protect", src.parent.parent, "-o", Path(tmp) / against, "--weights", "faces",
                                      "--against", against, "--quiet"), 1)
                   for against in ("training", "recognizers", "both")}
    record("recognizers", "timing-1mp", {"seconds": seconds, "pixels": 1000 * 1000},
           command="python bench/recognizers.py timing")


def interval_cell(k: int, n: int) -> str:
    from unlearnable_cli.metrics import wilson_interval
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.0f}–{100 * hi:.0f}]" if n else "—"


def _ratio(kp: int, np_: int, kc: int, nc: int) -> str:
    from unlearnable_cli.metrics import ratio_interval
    if not kc:
        return "—"
    bounds = ratio_interval(kp, np_, kc, nc)
    q = (kp / np_) / (kc / nc)
    return f"{q:.2f}" if bounds is None else f"{q:.2f} [{bounds[0]:.2f}–{bounds[1]:.2f}]"


def _count(acc: float, n: int) -> int:
    return round(acc * n / 100)


def lfw10_rows(recs: list[dict]) -> list[dict]:
    rows = []
    for r in recs:
        res = r["results"]
        if res.get("scenario") != "lfw10":
            continue
        n = res["settings"]["test_images"]
        faceless = res["settings"]["photos_without_face"]
        clean = {run["attacker"]: run for run in res["runs"] if run["data"] == "clean"}
        for run in res["runs"]:
            if run["data"] != "protected":
                continue
            kc, kp = _count(clean[run["attacker"]]["final_acc"], n), _count(run["final_acc"], n)
            rows.append({"attacker": run["attacker"], "gen": run["name"], "site": res.get("site", "none"),
                         "clean": interval_cell(kc, n),
                         "prot": interval_cell(kp, n), "ratio": _ratio(kp, n, kc, n),
                         "faceless": f"{faceless.get('train ' + run['name'], '?')} / {faceless.get('test', '?')}"})
    return rows


def personal_rows(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per person and pooled over people: the user's held-out photos recognized."""
    rows, pooled = [], {}
    for r in recs:
        res = r["results"]
        if res.get("scenario") != "personal":
            continue
        n = res["settings"]["target_heldout_images"]
        for attacker in sorted({run["attacker"] for run in res["runs"]}):
            run_of = {run["data"]: run for run in res["runs"] if run["attacker"] == attacker}
            kc, kp = _count(run_of["clean"]["final_acc"], n), _count(run_of["protected"]["final_acc"], n)
            gen = res["generator"] + ("" if res.get("site", "none") == "none" else f", {res['site']}")
            rows.append({"who": res["identity"], "gen": gen, "attacker": attacker, "n": n,
                         "clean": interval_cell(kc, n), "prot": interval_cell(kp, n), "ratio": _ratio(kp, n, kc, n),
                         "others": " / ".join(f"{run_of[d]['background_acc']:.1f}" for d in ("clean", "protected")),
                         "alarm": " / ".join(f"{run_of[d]['false_alarm_acc']:.1f}" for d in ("clean", "protected"))})
            p = pooled.setdefault((gen, attacker), [0, 0, 0, 0])
            p[0] += 1
            p[1] += n
            p[2] += kc
            p[3] += kp
    prow = [{"gen": g, "attacker": a, "people": k, "clean": interval_cell(kc, n), "prot": interval_cell(kp, n),
             "ratio": _ratio(kp, n, kc, n)} for (g, a), (k, n, kc, kp) in sorted(pooled.items())]
    return rows, prow


def transfer_rows(recs: list[dict]) -> tuple[list[dict], str]:
    """``bench/transfer.py``'s recognizers on LFW-10: each protected copy against clean, and
    a line on how each network was trained."""
    rows, about = [], []
    for r in recs:
        res = r["results"]
        if res.get("scenario") == "transfer-net":
            about.append(f"`{r['key']}`: ResNet-18 width {res['settings']['width']} at "
                     f"{res['settings']['size']} px, ArcFace (margin {res['settings']['margin']}, scale "
                     f"{res['settings']['scale']:g}), {res['settings']['epochs']} epochs on {res['photos']} photos "
                     f"of {res['identities']} LFW identities no benchmark uses; training accuracy "
                     f"{res['final_train_acc']}%, {res['seconds']:.0f} s here.")
        if res.get("scenario") != "transfer":
            continue
        n = res["settings"]["test_images"]
        clean = {run["attacker"]: run for run in res["runs"] if run["data"] == "clean"}
        for run in res["runs"]:
            if run["data"] == "clean":
                continue
            kc, kp = _count(clean[run["attacker"]]["final_acc"], n), _count(run["final_acc"], n)
            rows.append({"net": res.get("network", "transfer-net"),
                         "attacker": run["attacker"].replace("embedding:1nn", "embedding:1nn (no threshold)"),
                         "gen": run["data"], "clean": interval_cell(kc, n), "prot": interval_cell(kp, n),
                         "ratio": _ratio(kp, n, kc, n), "faces": f"{run['train_faces']}/{run['train_photos']}"})
    return rows, " ".join(about)


def summary() -> None:
    recs = load("recognizers")["records"]
    rows, prow = personal_rows(recs)
    timed = [r["results"]["seconds"] for r in recs if r["key"] == "timing-1mp"]
    speed = (["", "One 1-megapixel face photo through `protect --weights faces` (a fresh process, imports "
              "included), seconds: " + ", ".join(f"`--against {k}` {v:g}" for k, v in timed[0].items()) + "."]
             if timed else [])
    write_markdown("recognizers", "Recognizers: protection against dlib's pretrained face recognizer", [
        "LFW-10 (`faces.py`'s split; the 10 identities with the most photos, 85/15): identities recognized "
        "among the clean held-out photos, k/n = % [95% Wilson interval]; ratio = protected / clean [95% "
        "interval, Katz's log method]. Attackers (`eval --attacker`): `embedding:1nn` is face_recognition's "
        "1-NN with its 0.6 threshold, `embedding:linear` a logistic regression on the descriptors, "
        "`finetune:head` a new head on the frozen network, `finetune:whole` the head and the network "
        "(5 epochs, Adam). Photos without a face (dlib's detector): training photos left out, held-out "
        "ones counted as not recognized.", "",
        *table(lfw10_rows(recs), [("attacker", "attacker"), ("gen", "protected with"), ("site", "served as"),
                                  ("clean", "clean-enrolled"), ("prot", "protected-enrolled"),
                                  ("ratio", "ratio"), ("faceless", "no face: protected training / test")]),
        "", f"Personal folder (background `{BACKGROUND}`, {PER_CLASS} photos per identity at most, "
        f"{HOLDOUT:.0%} of the user's photos held out): the user's held-out clean photos named as the user; "
        "others' accuracy and false alarms (others called the user), clean- / protected-enrolled.", "",
        *table(rows, [("who", "user"), ("gen", "protected with"), ("attacker", "attacker"), ("n", "held out"),
                      ("clean", "clean-enrolled"), ("prot", "protected-enrolled"), ("ratio", "ratio"),
                      ("others", "others' accuracy %"), ("alarm", "false alarms %")]),
        "", "Personal folder, everyone together: held-out photos summed over the users.", "",
        *table(prow, [("gen", "protected with"), ("attacker", "attacker"), ("people", "users"),
                      ("clean", "clean-enrolled"), ("prot", "protected-enrolled"), ("ratio", "pooled ratio")]),
        *speed, *transfer_table(recs)])


def transfer_table(recs: list[dict]) -> list[str]:
    rows, about = transfer_rows(recs)
    if not rows:
        return []
    return ["", "Transfer: LFW-10 enrolled by a recognizer the cloak never saw, trained here. " + about +
            " Held-out clean photos named correctly; training photos where dlib found no face are left out.", "",
            *table(rows, [("net", "network"), ("attacker", "attacker"), ("gen", "protected with"), ("clean", "clean-enrolled"),
                          ("prot", "protected-enrolled"), ("ratio", "ratio"), ("faces", "protected photos enrolled")])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("bank", "lfw10", "personal", "timing", "summary"))
    ap.add_argument("--names", default="faces,cifar10", help="lfw10: protected copies (faces.py protect --name)")
    ap.add_argument("--name", default="faces", help="personal: name of this protection")
    ap.add_argument("--weights", default="faces", help="personal: generator name or file")
    ap.add_argument("--protect-args", default="", help="personal: extra protect options")
    ap.add_argument("--identities", type=int, default=11)
    ap.add_argument("--attackers", default="embedding,finetune")
    ap.add_argument("--site", default="none", help="none (as saved), or jpeg90 / jpeg75 / half (subsets.site_copy): how the photos are served")
    args = ap.parse_args()
    attackers = args.attackers.split(",")
    if args.stage == "bank":
        bank(args.identities)
    elif args.stage == "lfw10":
        lfw10(args.names.split(","), attackers, args.site)
    elif args.stage == "timing":
        timing()
    elif args.stage == "personal":
        personal(args.name, args.weights, args.identities, attackers, shlex.split(args.protect_args), args.site)
    summary()


if __name__ == "__main__":
    main()
