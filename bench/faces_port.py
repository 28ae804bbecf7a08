"""The torch port of dlib's face recognizer against dlib itself (issue 47, first part).

Two measurements, both needing the faces extra (``pip install -e ".[faces]"``) and
``../shared/data/lfw``:

- **lfw100**: the first photo (by name) of each of the first 100 identities (by name) of
  ``../shared/data/lfw``; every face dlib's HOG detector finds there (one upsampling, as
  ``face_recognition.face_locations``), its 5-point landmarks, then dlib's
  ``compute_face_descriptor(img, shape, num_jitters=1)`` (what ``face_encodings`` calls)
  against the port's ``embed_faces`` (chip warp + net, in torch).  Reported: worst and
  median cosine similarity, worst and median L2 distance, photos without a face.
- **upscaled**: the same faces on the photos upscaled ``--upscale`` times (bicubic), the
  landmarks scaled with them, so that the chips come through dlib's ``pyramid_down<2>``
  levels (LFW's own 250 px faces never need one); dlib's descriptor and chip against the
  port's.
- **lfw10**: the LFW-10 split of ``subsets.py`` (the 10 identities with the most photos,
  at most 120 each, seeded 85/15 per identity: 769 train, 136 held out); per photo the
  face nearest the photo's centre (LFW centres its subject).  Each held-out face gets
  face_recognition's 1-nearest-neighbour verdict among the training faces: the nearest
  one's identity when its Euclidean distance is at most 0.6, else "unknown"; once from
  dlib's descriptors and once from the port's.  Reported: agreeing verdicts out of the
  held-out faces, each one's accuracy, the largest difference of a nearest distance.
- **speed**: one forward pass of the net on a batch of 16 chips, median of 5, on the
  threads given (default 1).

Landmarks and dlib's descriptors are cached in ``bench/work/faces_port/`` (not committed),
keyed by the photo's path and dlib's version, so a rerun only redoes the port.

    python bench/faces_port.py [--photos 100] [--threads 1] [--upscale 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import ROOT, WORK, record, table, write_markdown
from subsets import LFW, lfw10_split

if TYPE_CHECKING:
    import numpy as np
    import torch

SUITE = "faces_port"
HERE = WORK / "faces_port"


def lfw100(n: int) -> list[Path]:
    """The first photo (sorted) of each of the first ``n`` identities (sorted)."""
    people = sorted(d for d in LFW.iterdir() if d.is_dir() and not d.name.startswith("."))[:n]
    return [sorted(p for p in d.iterdir() if p.suffix.lower() == ".jpg")[0] for d in people]


def load_rgb(path: Path) -> np.ndarray:
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def dlib_reference(paths: list[Path]) -> dict[str, dict]:
    """Per photo (relative to LFW): every face's landmarks and dlib's descriptor; cached."""
    import dlib
    import numpy as np
    from unlearnable_cli.faces.dlib_tools import detect_landmarks, dlib_descriptors
    cache_file = HERE / "dlib_reference.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    if cache.get("dlib") != dlib.__version__:
        cache = {"dlib": dlib.__version__, "photos": {}}
    todo = [p for p in paths if str(p.relative_to(LFW)) not in cache["photos"]]
    for i, path in enumerate(todo):
        img = load_rgb(path)
        marks = detect_landmarks(img, upsample=1)
        desc = dlib_descriptors(img, marks, num_jitters=1)
        cache["photos"][str(path.relative_to(LFW))] = {"landmarks": [m.tolist() for m in marks],
                                                       "descriptors": np.asarray(desc).tolist()}
        if (i + 1) % 100 == 0 or i + 1 == len(todo):
            HERE.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(cache))
            print(f"dlib: {i + 1}/{len(todo)} photos", flush=True)
    return {str(p.relative_to(LFW)): cache["photos"][str(p.relative_to(LFW))] for p in paths}


def port_descriptors(net: torch.nn.Module, path: Path, marks: list,
                     chips_too: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The port's descriptors (N, 128) of the faces at ``marks`` (and its uint8 chips)."""
    import numpy as np
    import torch
    from unlearnable_cli.faces import face_chips
    photo = torch.from_numpy(load_rgb(path).copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        chips = face_chips(photo, [np.array(m) for m in marks])
        desc = net(chips).double().numpy()
    if not chips_too:
        return desc
    return desc, (chips * 255).round().byte().permute(0, 2, 3, 1).numpy()


def measure_lfw100(net: torch.nn.Module, n: int) -> dict:
    import numpy as np
    paths = lfw100(n)
    ref = dlib_reference(paths)
    from unlearnable_cli.faces.dlib_tools import dlib_chip
    cos, l2, norms, chip_diff, chip_values = [], [], [], 0, 0
    for path in paths:
        entry = ref[str(path.relative_to(LFW))]
        if not entry["landmarks"]:
            continue
        (ours, chips), theirs = port_descriptors(net, path, entry["landmarks"], True), np.array(entry["descriptors"])
        img = load_rgb(path)
        for chip, marks in zip(chips, entry["landmarks"]):
            chip_diff += int((chip != dlib_chip(img, np.array(marks))).sum())
            chip_values += chip.size
        norms += list(np.linalg.norm(theirs, axis=1))
        cos += list((ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1))
        l2 += list(np.linalg.norm(ours - theirs, axis=1))
    no_face = sum(1 for p in paths if not ref[str(p.relative_to(LFW))]["landmarks"])
    return {"photos": len(paths), "photos_without_face": no_face, "faces": len(cos),
            "cosine_worst": float(min(cos)), "cosine_median": float(statistics.median(cos)),
            "l2_worst": float(max(l2)), "l2_median": float(statistics.median(l2)),
            "dlib_descriptor_norm_median": float(statistics.median(norms)),
            "chip_values_differing": chip_diff, "chip_values": chip_values}


def measure_upscaled(net: torch.nn.Module, n: int, factor: int) -> dict:
    """The lfw100 faces on photos upscaled ``factor`` times (bicubic), landmarks scaled with
    them: chips big enough that dlib (and the port) go through pyramid_down<2> levels."""
    import numpy as np
    import torch
    from PIL import Image
    from unlearnable_cli.faces import chip_geometry, face_chips
    from unlearnable_cli.faces.dlib_tools import dlib_chip, dlib_descriptors
    ref = dlib_reference(lfw100(n))
    cos, l2, levels, chip_diff, chip_values = [], [], [], 0, 0
    for rel, entry in ref.items():
        if not entry["landmarks"]:
            continue
        img = load_rgb(LFW / rel)
        big = np.asarray(Image.fromarray(img).resize((img.shape[1] * factor, img.shape[0] * factor),
                                                      Image.BICUBIC))
        marks = [np.array(m) * factor for m in entry["landmarks"]]
        theirs = dlib_descriptors(big, marks, num_jitters=1)
        with torch.no_grad():
            chips = face_chips(torch.from_numpy(big.copy()).permute(2, 0, 1).float() / 255, marks)
            ours = net(chips).double().numpy()
        levels += [chip_geometry(m, big.shape[:2]).levels for m in marks]
        for chip, m in zip((chips * 255).round().byte().permute(0, 2, 3, 1).numpy(), marks):
            chip_diff += int((chip != dlib_chip(big, m)).sum())
            chip_values += chip.size
        cos += list((ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1))
        l2 += list(np.linalg.norm(ours - theirs, axis=1))
    return {"photos": len(ref), "factor": factor, "faces": len(cos),
            "pyramid_levels": {str(k): levels.count(k) for k in sorted(set(levels))},
            "cosine_worst": float(min(cos)), "cosine_median": float(statistics.median(cos)),
            "l2_worst": float(max(l2)), "l2_median": float(statistics.median(l2)),
            "chip_values_differing": chip_diff, "chip_values": chip_values}


def central(entry: dict, shape: tuple[int, int]) -> int | None:
    """Index of the face whose landmarks' mean lies nearest the photo's centre."""
    import numpy as np
    if not entry["landmarks"]:
        return None
    centre = np.array([shape[1] / 2, shape[0] / 2])
    return int(np.argmin([np.linalg.norm(np.mean(m, axis=0) - centre) for m in entry["landmarks"]]))


def nn_verdicts(train: np.ndarray, labels: list[str], test: np.ndarray,
               threshold: float = 0.6) -> tuple[list[str], np.ndarray]:
    """face_recognition's 1-NN: nearest training identity if within ``threshold``, else unknown."""
    import numpy as np
    dist = np.linalg.norm(test[:, None, :] - train[None, :, :], axis=2)
    nearest = dist.argmin(1)
    best = dist[np.arange(len(test)), nearest]
    return [labels[j] if d <= threshold else "unknown" for j, d in zip(nearest, best)], best


def measure_lfw10(net: torch.nn.Module) -> dict:
    import numpy as np
    split = lfw10_split()
    parts = {part: [(LFW / who / name, who) for who, names in people.items() for name in names]
             for part, people in split.items()}
    ref = dlib_reference([p for items in parts.values() for p, _ in items])
    emb: dict[str, dict[str, list]] = {}
    skipped = {}
    for part, items in parts.items():
        rows = {"dlib": [], "port": [], "who": []}
        skipped[part] = 0
        for path, who in items:
            entry = ref[str(path.relative_to(LFW))]
            k = central(entry, load_rgb(path).shape[:2])
            if k is None:
                skipped[part] += 1
                continue
            rows["dlib"].append(entry["descriptors"][k])
            rows["port"].append(port_descriptors(net, path, [entry["landmarks"][k]])[0])
            rows["who"].append(who)
        emb[part] = rows
    tr, te = emb["train"], emb["test"]
    v_dlib, d_dlib = nn_verdicts(np.array(tr["dlib"]), tr["who"], np.array(te["dlib"]))
    v_port, d_port = nn_verdicts(np.array(tr["port"]), tr["who"], np.array(te["port"]))
    return {"train_faces": len(tr["who"]), "test_faces": len(te["who"]),
            "train_without_face": skipped["train"], "test_without_face": skipped["test"],
            "verdicts_agree": int(sum(a == b for a, b in zip(v_dlib, v_port))),
            "dlib_correct": int(sum(v == w for v, w in zip(v_dlib, te["who"]))),
            "port_correct": int(sum(v == w for v, w in zip(v_port, te["who"]))),
            "dlib_unknown": v_dlib.count("unknown"), "port_unknown": v_port.count("unknown"),
            "nearest_distance_max_difference": float(np.abs(d_dlib - d_port).max()),
            "closest_to_threshold": float(np.abs(d_dlib - 0.6).min())}


def measure_speed(net: torch.nn.Module, batch: int = 16, reps: int = 5) -> dict:
    import torch
    x = torch.rand(batch, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net(x)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return {"batch": batch, "threads": torch.get_num_threads(), "seconds_median": statistics.median(times),
            "seconds_all": [round(t, 4) for t in times]}


def _lines(key: str, res: dict) -> list[str]:
    """Plain-words lines for one record."""
    if "-upscaled" in key:
        return [f"The same {res['faces']} faces on the photos upscaled ×{res['factor']} (bicubic; landmarks "
                f"scaled with them), so that chips come through pyramid_down<2> levels "
                f"(faces per number of levels: {res['pyramid_levels']}):", "",
                *table([{"w": f"1 − {1 - res['cosine_worst']:.1e}", "m": f"1 − {1 - res['cosine_median']:.1e}",
                         "l2w": f"{res['l2_worst']:.2e}", "l2m": f"{res['l2_median']:.2e}",
                         "c": f"{res['chip_values_differing']} of {res['chip_values']}"}],
                       [("w", "cosine, worst"), ("m", "cosine, median"), ("l2w", "L2, worst"), ("l2m", "L2, median"),
                        ("c", "chip values ≠ dlib's get_face_chip")])]
    if key.startswith("lfw") and key.endswith("-embeddings"):
        return [f"{res['faces']} faces in {res['photos']} LFW photos ({res['photos_without_face']} without a face "
                "found by dlib's HOG detector, skipped); the port's descriptor against dlib's "
                "`compute_face_descriptor(num_jitters=1)`:", "",
                *table([{"w": f"1 − {1 - res['cosine_worst']:.1e}", "m": f"1 − {1 - res['cosine_median']:.1e}",
                         "l2w": f"{res['l2_worst']:.2e}", "l2m": f"{res['l2_median']:.2e}",
                         "n": f"{res['dlib_descriptor_norm_median']:.3f}",
                         "c": f"{res['chip_values_differing']} of {res['chip_values']}"}],
                       [("w", "cosine, worst"), ("m", "cosine, median"), ("l2w", "L2, worst"), ("l2m", "L2, median"),
                        ("n", "dlib descriptor norm, median"), ("c", "chip values ≠ dlib's get_face_chip")])]
    if key == "lfw10-1nn":
        return [f"LFW-10 (`subsets.py` split): {res['train_faces']} training faces, {res['test_faces']} held-out "
                f"faces ({res['train_without_face']} training and {res['test_without_face']} held-out photos "
                "without a face, skipped). 1-NN with face_recognition's 0.6 threshold:", "",
                *table([{"a": f"{res['verdicts_agree']} / {res['test_faces']}",
                         "d": f"{res['dlib_correct']} / {res['test_faces']}",
                         "p": f"{res['port_correct']} / {res['test_faces']}",
                         "u": f"{res['dlib_unknown']} / {res['port_unknown']}",
                         "x": f"{res['nearest_distance_max_difference']:.1e}",
                         "c": f"{res.get('closest_to_threshold', float('nan')):.3f}"}],
                       [("a", "verdicts agreeing"), ("d", "dlib correct"), ("p", "port correct"),
                        ("u", "unknown (dlib / port)"), ("x", "largest nearest-distance difference"),
                        ("c", "closest nearest distance to 0.6")])]
    return [f"One forward pass of {res['batch']} chips on {res['threads']} thread(s): "
            f"{res['seconds_median']:.3f} s (median of {len(res['seconds_all'])}: {res['seconds_all']})."]


def summary() -> None:
    from common import load, machine_line
    body = []
    for rec in load(SUITE)["records"]:
        body += [f"## {rec['key']}", "", f"`{rec['command']}` — {machine_line(rec['environment'])}", "",
                 *_lines(rec["key"], rec["results"]), ""]
    print(write_markdown(SUITE, "dlib's face recognizer: the torch port against dlib", body))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--upscale", type=int, default=4, help="factor of the pyramid check (0: skip it)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from unlearnable_cli.faces import load_face_net
    net = load_face_net()
    command = f"python bench/faces_port.py --photos {args.photos} --threads {args.threads} --upscale {args.upscale}"
    record(SUITE, f"lfw{args.photos}-embeddings", measure_lfw100(net, args.photos), command=command)
    if args.upscale > 1:
        record(SUITE, f"lfw{args.photos}-upscaled{args.upscale}-embeddings",
               measure_upscaled(net, args.photos, args.upscale), command=command)
    record(SUITE, "lfw10-1nn", measure_lfw10(net), command=command)
    record(SUITE, f"forward-16-threads{args.threads}", measure_speed(net), command=command)
    summary()


if __name__ == "__main__":
    main()
