"""Atomic writes: the final name holds the old file or the whole new one, with normal permissions."""

import os
import stat

import pytest

from unlearnable_cli.io.atomic import append_json_lines, atomic_path, read_json_lines
from unlearnable_cli.models.weights import save_generator

from conftest import tiny_model


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_append_json_lines_ends_a_line_cut_short_by_a_crash_before_appending(tmp_path):
    path = tmp_path / "sub" / "journal.jsonl"
    append_json_lines(path, [{"n": 1}, {"n": 2}])
    with open(path, "a") as f:
        f.write('{"cut sh')                                  # a crash mid-line
    append_json_lines(path, [{"n": 3}])
    append_json_lines(path, [])
    assert path.read_text().splitlines() == ['{"n": 1}', '{"n": 2}', '{"cut sh', '{"n": 3}']
    assert read_json_lines(path) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert read_json_lines(tmp_path / "missing.jsonl") == []


def test_successful_write_replaces_and_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["out.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_generator_file_gets_umask_permissions_not_0600(tmp_path):
    # safetensors creates files 0600; a shared generator must be readable as a plain file would be.
    model, card = tiny_model()
    path = tmp_path / "g.safetensors"
    save_generator(path, model, card)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
