"""Same outputs before and after a refactor: digests of protect's outputs and of tiny generators.

    python bench/identity.py capture --name before     # on the old commit
    python bench/identity.py capture --name after      # on the new one
    python bench/identity.py compare before after      # exit 1 on any difference

``capture`` protects the bundled photos and 200 CIFAR-10 training images (20 per class,
from ../shared/data) with the default generator and with ``--weights faces``, and trains
a tiny generator of each method; it stores the SHA-256 of every output file and every
generator's tensors (the card's ``tensors_sha256``; wall times and dates differ by run)
in ``bench/work/identity/<name>.json``.  A difference names the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from common import ROOT, WORK, cli, environment, load, record, write_markdown
from subsets import cifar_per_class, link_files

OUT = WORK / "identity"
#: A tiny train-generator run; every method trains with it on the 200-image subset.
TINY = ["--arch", "convnet", "--width", "4", "--steps", "4", "--batch-size", "8", "--noise-steps", "2",
        "--eot-samples", "2", "--adv-steps", "2", "--checkpoint-every", "2", "--quiet", "--device", "cpu"]
METHODS = {"sem": ["--method", "sem"], "rem": ["--method", "rem"], "em": ["--method", "em"], "em-classwise": ["--method", "em", "--class-wise"],
           "tue": ["--method", "tue", "--score-steps", "5"]}


def subset(per_class: int = 20) -> Path:
    """20 CIFAR-10 training images per class, as symlinks (made once)."""
    return link_files(OUT / "cifar200", cifar_per_class("train", per_class))


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def capture(name: str) -> None:
    from safetensors import safe_open
    work = OUT / name
    result: dict[str, dict[str, str]] = {}
    for data_name, data in {"photos": ROOT / "examples" / "photos", "cifar200": subset()}.items():
        for weights in ("cifar10", "faces"):
            out = work / f"{data_name}-{weights}"
            cli("protect", data, "-o", out, "--weights", weights, "--quiet", "--device", "cpu", "--overwrite")
            result[f"protect {data_name} {weights}"] = digests(out)
    for method, extra in METHODS.items():
        out = work / f"gen-{method}.safetensors"
        cli("train-generator", subset(), "-o", out, *TINY, *extra, "--overwrite")
        with safe_open(str(out), "pt") as f:
            result[f"train {method}"] = {"tensors_sha256": f.metadata()["tensors_sha256"]}
    result["commit"] = {"sha": environment()["commit"]}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"{OUT / name}.json: {sum(len(v) for v in result.values())} digests")


def compare(a: str, b: str) -> int:
    """Print every digest that differs (exit 1), and record the comparison in ``results/identity.json``."""
    left, right = (json.loads((OUT / f"{n}.json").read_text()) for n in (a, b))
    commits = {n: d.pop("commit", {}).get("sha", "?") for n, d in ((a, left), (b, right))}
    bad = [f"{k}: {f}" for k in sorted(set(left) | set(right))
           for f in sorted(set(left.get(k, {})) | set(right.get(k, {})))
           if left.get(k, {}).get(f) != right.get(k, {}).get(f)]
    counts = {k: len(v) for k, v in sorted(left.items())}
    print("\n".join(bad) or f"identical: {sum(counts.values())} digests in {len(counts)} groups")
    record("identity", f"{commits[a]} vs {commits[b]}",
           {"before_commit": commits[a], "after_commit": commits[b], "identical": not bad, "differences": bad,
            "digests_per_group": counts})
    write_markdown("identity", "Identity: outputs before and after a change", [
        "| before | after | digests | identical | differences |", "|---|---|---|---|---|",
        *[f"| {r['results']['before_commit']} | {r['results']['after_commit']} | "
          f"{sum(r['results']['digests_per_group'].values())} | {'yes' if r['results']['identical'] else 'NO'} | "
          f"{len(r['results']['differences'])} |" for r in load("identity")["records"]]])
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("capture").add_argument("--name", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args()
    if args.cmd == "capture":
        capture(args.name)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
