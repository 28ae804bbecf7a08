"""A torchrun entry point for tests: the ``unlearnable`` CLI, with one rank made to die.

``UNLEARNABLE_TEST_DIE_RANK`` / ``UNLEARNABLE_TEST_DIE_STEP``: that rank ends abruptly
(``os._exit``, as a killed process would) when it starts that training step or that
protect batch.  The fault lives here, in the tests, not in the package.

At exit (Linux) it prints how many gloo worker threads are still running: none should
be, since destroy_process_group joins them once nothing else holds the group.  One
still running can abort the rank while Python shuts down (see distributed.start).
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

from unlearnable_cli.protect import protector
from unlearnable_cli.methods.sem import SEM
from unlearnable_cli.commands.app import app

DIE_RANK = int(os.environ.get("UNLEARNABLE_TEST_DIE_RANK", "-1"))
DIE_AT = int(os.environ.get("UNLEARNABLE_TEST_DIE_STEP", "-1"))

if int(os.environ.get("RANK", "0")) == DIE_RANK:
    real_step, real_protect = SEM.train_step, protector.Protector.protect
    calls = {"batches": 0}

    def sem_step(self, run):  # type: ignore[no-untyped-def]
        if run.step == DIE_AT:
            os._exit(9)
        return real_step(self, run)

    def protect_batch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if calls["batches"] == DIE_AT:
            os._exit(9)
        calls["batches"] += 1
        return real_protect(self, *args, **kwargs)

    SEM.train_step = sem_step  # type: ignore[method-assign]
    protector.Protector.protect = protect_batch  # type: ignore[method-assign]


def report_gloo_threads() -> None:
    tasks = Path("/proc/self/task")
    if tasks.is_dir():
        names = [(t / "comm").read_text().strip() for t in tasks.iterdir()]
        print(f"gloo worker threads at exit: {names.count('pt_gloo_runloop')}", file=sys.stderr)


atexit.register(report_gloo_threads)
app(prog_name="unlearnable")
