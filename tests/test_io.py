"""Atomic writes: a reader sees the old file or the whole new one, and a failed write leaves no trace."""

from pathlib import Path

import pytest

from defacebench import io


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "table.tsv"
    io.write_text("old\n", target)
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half a tab")
            assert target.read_text() == "old\n"  # not yet visible
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.tsv"]


def test_atomic_path_keeps_suffixes_and_makes_parents(tmp_path):
    target = tmp_path / "a" / "b" / "img.nii.gz"
    with io.atomic_path(target) as tmp:
        assert "".join(Path(tmp).suffixes).endswith(".nii.gz")
        Path(tmp).write_bytes(b"x")
    assert target.read_bytes() == b"x"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
