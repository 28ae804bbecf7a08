"""The one harness every benchmark writes through (kornia ``benchmarks/`` style).

Result schema, ``bench/results/<suite>.json``::

    {"suite": "<suite>", "schema": 1,
     "records": [{"key": "<what was measured>",
                  "command": "<the command line that measured it>",
                  "environment": {"commit", "dirty", "date", "machine": {...}, "versions": {...}},
                  "results": {...suite-specific figures...}}, ...]}

A suite's file holds the latest record per key; earlier records live in git history,
not in the tree.  Beside it, ``<suite>.md`` is generated from the records (never edited
by hand).  Drivers call the installed command line (:func:`cli`) or the package's
public functions, never private internals.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"            # caches and protected copies; not committed
SHARED = ROOT.parent / "shared" / "data"
SCHEMA = 1


def cli(*args: object, check: bool = True) -> float:
    """Run ``unlearnable ARGS`` as a separate process from the repository root; wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unlearnable_cli", *map(str, args)], check=check, cwd=ROOT)
    return time.perf_counter() - start


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Commit (and whether the tree had uncommitted changes other than results), date, machine and versions."""
    import torch
    from unlearnable_cli import __version__
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {"unlearnable": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def command_line() -> str:
    return "python " + " ".join([Path(sys.argv[0]).relative_to(ROOT).as_posix() if Path(sys.argv[0]).is_absolute()
                                 and ROOT in Path(sys.argv[0]).parents else sys.argv[0], *sys.argv[1:]])


def load(suite: str) -> dict[str, Any]:
    path = RESULTS / f"{suite}.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"suite": suite, "schema": SCHEMA, "records": []}


def record(suite: str, key: str, results: dict[str, Any], command: str | None = None,
           env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store ``results`` as the latest record ``key`` of ``suite``; returns the whole suite."""
    data = load(suite)
    entry = {"key": key, "command": command or command_line(), "environment": env or environment(),
             "results": results}
    data["records"] = [r for r in data["records"] if r["key"] != key] + [entry]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{suite}.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def table(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    """Markdown table lines: ``columns`` are (key, header); values printed as given."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(k, "—")) for k, _ in columns) + " |")
    return lines


def write_markdown(suite: str, title: str, body: list[str]) -> Path:
    """``results/<suite>.md``: a title, a generated-from line, and ``body``."""
    path = RESULTS / f"{suite}.md"
    path.write_text("\n".join([f"# {title}", "", f"Generated from `{suite}.json` by `bench/{suite.split('-')[0]}.py`; "
                               "each record names its command, commit and machine there.", "", *body]) + "\n")
    return path


def machine_line(env: dict[str, Any]) -> str:
    """One line naming the machine, versions and commit of a record (fields it lacks are left out)."""
    m, v = env.get("machine", {}), env.get("versions", {})
    parts = [m.get("cpu") or m.get("platform"), f"{m['cores']} cores" if m.get("cores") else None,
             f"{m['threads']} threads" if m.get("threads") else None,
             f"torch {v['torch']}" if v.get("torch") else None,
             f"commit {env.get('commit', '?')}" + (" (uncommitted changes)" if env.get("dirty") else ""),
             env.get("date")]
    return ", ".join(p for p in parts if p)


def twelve_mp(weights: Path, tmp: Path, extra: tuple[str, ...] = (), size: tuple[int, int] = (4000, 3000)) -> dict[str, float]:
    """Protect one photo of ``size`` (width, height; 12 MP unless given) via the CLI in a child
    process (``extra``: more protect options); wall time and peak RSS."""
    from PIL import Image
    from skimage import data
    photo = tmp / "big" / "photo.jpg"
    photo.parent.mkdir()
    img = Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC)
    img.save(photo, quality=92)
    code = f"""
import resource, time, sys
from typer.testing import CliRunner
from unlearnable_cli.commands.app import app
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = CliRunner().invoke(app, ["protect", "{photo.parent}", "-o", "{tmp / 'big-out'}", "--weights", "{weights}",
                             "--device", "cpu", "--quiet", *{list(extra)!r}])
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(r.exit_code, wall, base, peak)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    exit_code, wall, base, peak = out.stdout.split()[-4:]
    assert exit_code == "0", out.stdout + out.stderr
    return {"seconds": round(float(wall), 2), "peak_rss_mib": round(int(peak) / 1024, 1),
            "rss_after_imports_mib": round(int(base) / 1024, 1),
            "extra_mib": round((int(peak) - int(base)) / 1024, 1)}
