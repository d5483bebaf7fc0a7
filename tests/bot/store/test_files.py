import hashlib
from pathlib import Path

import pytest

from bot.store.files import ImageFiles
from tests.pictures import photo, png_bytes


def test_same_bytes_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    data = png_bytes(photo(40, 30))
    first = files.put(data)
    second = files.put(data)
    assert first == second
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert (first.size, first.width, first.height, first.format) == (len(data), 40, 30, "PNG")
    assert files.read(first.sha256) == data
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == [first.sha256]


def test_stray_files_are_those_no_row_names(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    kept = files.put(png_bytes(photo(8, 8, seed=1)))
    stray = files.put(png_bytes(photo(8, 8, seed=2)))
    leftover = files.path(stray.sha256).with_name(f"{stray.sha256}.123.tmp")
    leftover.write_bytes(b"half a file")
    assert set(files.stray_files({kept.sha256})) == {files.path(stray.sha256), leftover}


def test_rejects_paths_that_are_not_hashes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ImageFiles(tmp_path).path("../../etc/passwd")
