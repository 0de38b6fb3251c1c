"""The book's machinery: profiles, stripped notebooks with parameters cells, the runner."""

import re
import subprocess
import sys

import nbformat
import papermill
import pytest
import torch

from lib import profiles
from lib.notebooks import chapter_notebooks, stored_outputs, strip
from lib.paths import ROOT
from lib.run import check_parameters, parse_value, report, run_chapter, select

NOTEBOOKS = chapter_notebooks()


def test_profiles_fill_in_and_override():
    p = profiles.resolve("simulating_ct", "quick", image_size=64, n_angles=None)
    assert p.profile == "quick" and p.image_size == 64
    assert p.n_angles == profiles.CHAPTERS["simulating_ct"]["n_angles"]["quick"]
    for chapter, table in profiles.CHAPTERS.items():
        for name, by_profile in {**profiles.COMMON, **table}.items():
            assert set(by_profile) == set(profiles.PROFILE_NAMES), f"{chapter}.{name}"


def test_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    assert profiles.resolve("simulating_ct").profile == "paper"
    monkeypatch.setenv("BOOK_PROFILE", "huge")
    with pytest.raises(ValueError, match="valid profiles: quick, default, paper"):
        profiles.resolve("simulating_ct")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid profiles"):
        profiles.resolve("simulating_ct", "fast")
    with pytest.raises(ValueError, match=r"valid parameters: .*image_size"):
        profiles.resolve("simulating_ct", "quick", imagesize=3)
    with pytest.raises(ValueError, match="chapters: .*simulating_ct"):
        profiles.resolve("no_such_chapter")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(notebook):
    assert stored_outputs(notebook) == [], f"{notebook.name} has stored outputs: run `make strip`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_have_a_parameters_cell_that_matches_the_profiles(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = list(papermill.inspect_notebook(str(notebook)))
    assert declared[0] == "profile"
    chapters = [c for c in profiles.CHAPTERS if f'resolve("{c}"' in "".join(x.source for x in cells)]
    assert len(chapters) == 1, "the notebook resolves its parameters with lib.profiles.resolve"
    assert sorted(declared[1:]) == profiles.parameter_names(chapters[0])


def test_every_chapter_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for notebook in NOTEBOOKS:
        assert f"notebooks/{notebook.stem}" in toc


def test_strip_removes_outputs(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                                  execution_count=1)]
    nb.cells[0].execution_count = 1
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    assert stored_outputs(path) == [0]
    assert strip(path) and not strip(path)
    assert stored_outputs(path) == []


def test_runner_arguments():
    assert parse_value("512") == 512 and parse_value("1e5") == 1e5
    assert parse_value("[1, 2]") == [1, 2] and parse_value("cuda") == "cuda"
    with pytest.raises(SystemExit, match="matches no chapter"):
        select(NOTEBOOKS, ["99"])
    with pytest.raises(SystemExit, match="unknown parameter.*valid parameters"):
        check_parameters(NOTEBOOKS, {"no_such_parameter": 1})
    split = check_parameters(NOTEBOOKS, {"seed": 3})
    assert all(v == {"seed": 3} for v in split.values())


def _tiny_notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = None\nvalue = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runner_reports_the_failing_cell(tmp_path):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    _tiny_notebook(good, "assert value == 2")
    _tiny_notebook(bad, "assert value == 3, 'value is not three'")
    out = tmp_path / "out"
    out.mkdir()
    ok = run_chapter(good, out, {"profile": "quick", "value": 2})
    failed = run_chapter(bad, out, {"profile": "quick", "value": 2})
    assert ok.error is None and (out / "01_good.ipynb").exists()
    assert "value is not three" in failed.error and "assert value == 3" in failed.error
    table = report([ok, failed])
    assert "01_good" in table and "FAILED" in table and "total" in table


def test_runner_command_line_rejects_bad_input():
    run = [sys.executable, "-m", "lib.run"]
    bad_profile = subprocess.run(run + ["--profile", "huge"], capture_output=True, text=True,
                                 check=False)
    assert bad_profile.returncode != 0 and "invalid choice" in bad_profile.stderr
    bad_param = subprocess.run(run + ["--only", "02", "-p", "nope", "1"], capture_output=True,
                               text=True, check=False)
    assert bad_param.returncode != 0 and "valid parameters" in bad_param.stderr
    into_data = subprocess.run(run + ["--only", "02", "--output", str(ROOT / "data" / "x")],
                               capture_output=True, text=True, check=False)
    assert into_data.returncode != 0 and "data/" in into_data.stderr


def test_the_ci_script_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in readme and "\nmake test\n" in ci


def test_device_choice():
    from lib.device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


def _stated_pixel_sizes(text: str) -> list[float]:
    return [float(mm) for mm in re.findall(r"(\d+(?:\.\d+)?) mm pixels", text)]


def test_the_prose_pages_state_the_protocol_pixel_size():
    """The static pages cannot glue numbers: each "X mm pixels" in them must be PAPER's."""
    from lib.ct.protocol import PAPER

    assert _stated_pixel_sizes("at 0.70 mm pixels and 1.5 mm pixels") == [0.7, 1.5]
    pages = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]
    stated = {page.name: _stated_pixel_sizes(page.read_text()) for page in pages}
    assert any(stated.values()), "no page states the pixel size: update this test"
    wrong = {name: sizes for name, sizes in stated.items()
             if any(abs(mm - PAPER.pixel_mm) > 0.01 for mm in sizes)}
    assert not wrong, f"pages state other pixel sizes than PAPER's {PAPER.pixel_mm:.2f} mm: {wrong}"
