"""Several processes on one machine: byte identity and speed of torchrun and ``--shard``.

Stages (each writes its own record of ``results/distributed.json``):

- ``identity``: ``protect`` of ``--identity-images`` CIFAR-10 test images (the shipped
  generator, default settings) in 1 process, under torchrun with 2 and 3 ranks, and
  as ``--shard 1/3``, ``2/3``, ``3/3`` followed by a plain run; every output's SHA-256
  is compared with the one-process run's, and the closing run must protect nothing.
- ``protect-speed``: ``protect`` of ``--images`` CIFAR-10 test images, 1 process x 2
  threads against torchrun 2 processes x 1 thread, interleaved ``--reps`` times; the
  ratio of wall times per repetition and their median.
- ``train-speed``: ``--steps`` SEM steps of ``train-generator --preset cpu`` (global
  batch 128) on a CIFAR-10 training subset, the same two layouts; the training loop's
  own timer (the log's ``elapsed``), so start-up and the closing measurement are not
  counted.
- ``io``: the per-image work outside the noise engine for a 1-megapixel photo (JPEG
  decode with orientation and colour handling, PNG and lossless-WebP encode with
  fsync and rename, through the package's own readers and writers), and a whole
  ``protect`` of ``--io-photos`` such photos: the figures docs/distributed.md's
  scaling model rests on.  Medians of ``--reps`` x 5 timings.

    python bench/distributed.py identity|protect-speed|train-speed|io|summary
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED, WORK, load, machine_line, record, table, write_markdown

SUITE = "distributed"
HERE = WORK / "distributed"
CIFAR = SHARED / "cifar10"


def subset(split: str, per_class: int) -> Path:
    """The first ``per_class`` images of each CIFAR-10 class of ``split``, copied once."""
    dest = HERE / f"{split}-{per_class}pc"
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for cls in sorted(p for p in (CIFAR / split).iterdir() if p.is_dir()):
        (tmp / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(f, tmp / cls.name / f.name)
    tmp.rename(dest)
    return dest


def command(args: list[object], processes: int, threads: int) -> tuple[list[str], dict[str, str]]:
    """``unlearnable ARGS`` in one process or under torchrun, with ``threads`` per process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if processes == 1:
        return [sys.executable, "-m", "unlearnable_cli", *map(str, args)], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "unlearnable_cli", *map(str, args)], env


def run(args: list[object], processes: int = 1, threads: int = 2) -> float:
    cmd, env = command(args, processes, threads)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def fresh(name: str) -> Path:
    out = HERE / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    return out


def identity(images: int) -> None:
    src = subset("test", images // 10)
    base: list[object] = ["protect", src, "--quiet"]
    reference = fresh("one")
    run([*base, "-o", reference])
    want = digests(reference)
    results: dict[str, object] = {"images": len(want)}
    for n in (2, 3):
        out = fresh(f"torchrun{n}")
        run([*base, "-o", out], processes=n, threads=1)
        got = digests(out)
        results[f"torchrun_{n}_identical"] = sum(got.get(k) == v for k, v in want.items())
        results[f"torchrun_{n}_manifest_images"] = len(json.loads((out / "manifest.json").read_text())["images"])
    out = fresh("shards")
    for k in (1, 2, 3):
        run([*base, "-o", out, "--shard", f"{k}/3"])
    got = digests(out)
    results["shards_3_identical"] = sum(got.get(k) == v for k, v in want.items())
    cmd, env = command([*base, "-o", out], 1, 2)
    merge = subprocess.run(cmd, env=env, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    results["merge_run_says"] = " ".join(merge.split("\n")[0].split())
    results["shards_manifest_images"] = len(json.loads((out / "manifest.json").read_text())["images"])
    print(results)
    record(SUITE, "identity", results)


def speed(kind: str, reps: int, images: int, steps: int) -> None:
    layouts = {"1x2": (1, 2), "2x1": (2, 1)}
    times: dict[str, list[float]] = {k: [] for k in layouts}
    if kind == "protect":
        src = subset("test", images // 10)
        for _ in range(reps):
            for name, (p, t) in layouts.items():
                out = fresh(f"speed-{name}")
                times[name].append(run(["protect", src, "-o", out, "--quiet"], processes=p, threads=t))
        what = {"images": images}
    else:
        data = subset("train", 30)
        for _ in range(reps):
            for name, (p, t) in layouts.items():
                out = fresh(f"train-{name}")
                out.mkdir(parents=True)
                weights = out / "g.safetensors"
                run(["train-generator", data, "-o", weights, "--preset", "cpu", "--steps", steps,
                     "--checkpoint-every", steps, "--quiet"], processes=p, threads=t)
                log = [json.loads(line) for line in weights.with_suffix(".log.jsonl").read_text().splitlines()]
                times[name].append(max(r["elapsed"] for r in log if "elapsed" in r))
        what = {"steps": steps, "train_images": 300, "global_batch": 128}
    ratios = [b / a for a, b in zip(times["1x2"], times["2x1"])]
    results = {**what, "reps": reps, "seconds_1x2": [round(t, 2) for t in times["1x2"]],
               "seconds_2x1": [round(t, 2) for t in times["2x1"]],
               "ratio_2x1_over_1x2": [round(r, 3) for r in ratios],
               "median_ratio": round(statistics.median(ratios), 3)}
    print(results)
    record(SUITE, f"{kind}-speed", results)


def io(reps: int, photos: int) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data as samples

    sys.path.insert(0, str(ROOT))
    from unlearnable_cli.io.images import OutputFormat, read_image, write_image

    src = HERE / "io-1mp"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
    for i in range(photos):
        img = Image.fromarray(getattr(samples, names[i % len(names)])()).convert("RGB").resize((1155, 866))
        img.save(src / f"{i}.jpg", quality=90)
    timings: dict[str, list[float]] = {"decode": [], "png": [], "webp": []}
    out = fresh("io-writes")
    out.mkdir(parents=True)
    for _ in range(reps * 5):
        f = src / "0.jpg"
        t = time.perf_counter()
        pixels = read_image(f).pixels
        timings["decode"].append(time.perf_counter() - t)
        for fmt in (OutputFormat.PNG, OutputFormat.WEBP):
            noisy = np.clip(pixels.astype(np.int16) + np.random.randint(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
            t = time.perf_counter()
            write_image(out / f"x{fmt.suffix}", noisy, fmt=fmt)
            timings[fmt.value].append(time.perf_counter() - t)
    wall = run(["protect", src, "-o", fresh("io-protect"), "--quiet"])
    results = {"megapixels": round(1155 * 866 / 1e6, 3),
               **{f"{k}_s_median": round(statistics.median(v), 4) for k, v in timings.items()},
               "protect_photos": photos, "protect_wall_s": round(wall, 1),
               "protect_s_per_photo": round(wall / photos, 2)}
    print(results)
    record(SUITE, "io-1mp", results)


def summary() -> None:
    data = load(SUITE)
    body: list[str] = []
    for r in data["records"]:
        res = r["results"]
        body += [f"## {r['key']}", "", f"`{r['command']}` — {machine_line(r['environment'])}", ""]
        if r["key"] == "io-1mp":
            body += table([res], [("megapixels", "MP"), ("decode_s_median", "JPEG decode (s)"),
                                  ("png_s_median", "PNG write (s)"), ("webp_s_median", "WebP write (s)"),
                                  ("protect_photos", "photos protected"), ("protect_s_per_photo", "protect s/photo")])
            body.append("")
        elif r["key"] == "identity":
            n = res["images"]
            rows = [{"run": f"torchrun {k} ranks", "identical": f"{res[f'torchrun_{k}_identical']}/{n}",
                     "manifest": res[f"torchrun_{k}_manifest_images"]} for k in (2, 3)]
            rows.append({"run": "--shard 1/3, 2/3, 3/3 + plain run", "identical": f"{res['shards_3_identical']}/{n}",
                         "manifest": res["shards_manifest_images"]})
            body += table(rows, [("run", "run"), ("identical", "outputs identical to 1 process"),
                                 ("manifest", "manifest records")])
            body += ["", f"Closing plain run after the shards: \"{res['merge_run_says']}\"", ""]
        else:
            body += table([{"a": ", ".join(map(str, res["seconds_1x2"])), "b": ", ".join(map(str, res["seconds_2x1"])),
                            "r": ", ".join(map(str, res["ratio_2x1_over_1x2"])), "m": res["median_ratio"]}],
                          [("a", "1 process x 2 threads (s)"), ("b", "2 processes x 1 thread (s)"),
                           ("r", "ratio per repetition"), ("m", "median ratio")])
            body.append("")
    write_markdown(SUITE, "Several processes: torchrun and --shard", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("identity", "protect-speed", "train-speed", "io", "summary"))
    ap.add_argument("--io-photos", type=int, default=10)
    ap.add_argument("--identity-images", type=int, default=200)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if a.stage == "identity":
        identity(a.identity_images)
    elif a.stage == "io":
        io(a.reps, a.io_photos)
    elif a.stage == "summary":
        summary()
        return
    else:
        speed(a.stage.split("-")[0], a.reps, a.images, a.steps)
    summary()


if __name__ == "__main__":
    main()
