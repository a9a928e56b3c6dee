"""docs/architecture.md, "How to add a stage", shows the example stage that
tests/mpi/test_stage_driver.cpp runs: the code in the page must be the file."""
import os
import re
from pathlib import Path

SOURCE = Path(os.environ.get("DINV_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def section(text, title):
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_the_page_shows_the_example_stage_the_tests_run():
    page = section((SOURCE / "docs/architecture.md").read_text(), "How to add a stage")
    blocks = re.findall(r"```cpp\n(.*?)```", page, re.S)
    assert len(blocks) == 1, "one C++ block: the example stage"
    assert blocks[0] == (SOURCE / "src/stage/example_stage.cpp").read_text()


def test_the_tests_run_the_example_on_one_two_and_four_ranks():
    cmake = (SOURCE / "tests/CMakeLists.txt").read_text()
    assert re.search(r"dinv_add_mpi_gtest\(dinv_mpi_tests \$\{DINV_MPI_TESTS\} RANKS 1 2 4\)", cmake)
    assert "example_stage(" in (SOURCE / "tests/mpi/test_stage_driver.cpp").read_text()
