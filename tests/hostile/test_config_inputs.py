"""Hostile configuration input (issue 19): --config naming what is not a
readable file, a key set twice in one file, values and lines so long that
Boost's conversion would take minutes."""
import os

import pytest

from hostile_util import dinv, refused


def test_config_naming_a_directory_is_refused(tmp_path):
    refused(dinv("info", "--config", tmp_path), 2, str(tmp_path), "is a directory")


def test_config_naming_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.ini"
    os.mkfifo(fifo)
    refused(dinv("info", "--config", fifo, timeout=60), 2, "pipe.ini", "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_is_refused(tmp_path):
    f = tmp_path / "secret.ini"
    f.write_text("[run]\nseed = 3\n")
    f.chmod(0)
    refused(dinv("info", "--config", f), 2, "secret.ini", "Permission denied")


def test_duplicate_key_in_one_file_names_both_lines(tmp_path):
    f = tmp_path / "dup.ini"
    f.write_text("[run]\nseed = 1\n\n# again\nseed = 2\n")
    refused(dinv("info", "--config", f), 2, "dup.ini:5", "run.seed", "dup.ini:2")
    # The same key spelled with its section in another part of the file.
    f.write_text("[run]\nseed = 1\n[store]\nrun.seed = 2\n")
    refused(dinv("info", "--config", f), 2, "dup.ini:4", "dup.ini:2")


def test_later_file_still_overrides_an_earlier_one(tmp_path):
    a, b = tmp_path / "a.ini", tmp_path / "b.ini"
    a.write_text("[store]\npath = a.h5\n")
    b.write_text("[store]\npath = b.h5\n")
    r = dinv("info", "--config", a, "--config", b)
    assert r.returncode == 1 and "store 'b.h5' does not exist" in r.stderr, r.stderr


def test_huge_number_is_refused_quickly_naming_file_and_line(tmp_path):
    f = tmp_path / "big.ini"
    f.write_text("[run]\nthreads = 1\nseed = " + "1" * 1_000_000 + "\n")
    refused(dinv("info", "--config", f, timeout=60), 2, "big.ini:3", "run.seed", "1000000 characters")


def test_huge_value_on_the_command_line_is_refused(tmp_path):
    refused(dinv("info", "--run.seed=" + "7" * 100_000, timeout=60), 2, "command line", "run.seed")
    refused(dinv("info", "--store.path=" + "x" * 100_000, timeout=60), 2, "command line", "store.path")


def test_overlong_line_is_refused(tmp_path):
    f = tmp_path / "long.ini"
    f.write_text("[run]\n# " + "x" * (2 << 20) + "\n")
    refused(dinv("info", "--config", f, timeout=60), 2, "long.ini:2", "characters")


def test_sampling_resolution_is_bounded():
    refused(dinv("generate", "--generate.sampling_resolution=1000000"), 2, "generate.sampling_resolution",
            "out of range", "<= 4096")


def test_a_config_saved_by_a_windows_editor_is_read(tmp_path):
    # A UTF-8 byte-order mark and CRLF line ends; the value proves the file was read.
    f = tmp_path / "win.ini"
    f.write_bytes(b"\xef\xbb\xbf[store]\r\npath = from_windows.h5\r\n")
    r = dinv("info", "--config", f)
    assert r.returncode == 1 and "store 'from_windows.h5' does not exist" in r.stderr, r.stderr
