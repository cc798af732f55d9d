"""lora-teach doctor: one row per check, OK or a fix, and a non-zero exit when something essential fails."""

from __future__ import annotations

import gzip
import shutil
import types

import pytest
import torch

from lora_teach import cli
from lora_teach.course import doctor
from lora_teach.data import FILES, data_root


def _by_name(rows):
    return {row.name: row for row in rows}


def test_report_covers_python_packages_device_and_data():
    rows = _by_name(doctor.doctor_report())
    expected = {
        "python",
        "torch",
        "torchvision",
        "jupyterlab",
        "matplotlib",
        "tqdm",
        "nbval",
        "device",
        "data",
    }
    assert expected <= set(rows)
    assert all(row.ok for row in rows.values()), [r for r in rows.values() if not r.ok]
    assert rows["device"].value.split()[0] in {"cpu", "cuda", "mps"}


def test_cli_doctor_prints_ok_and_exits_zero(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "OK    torch" in out
    assert "ready for the course" in out


def test_missing_data_fails_with_a_fix_and_non_zero_exit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))
    data = _by_name(doctor.doctor_report())["data"]
    assert data.status == "FAIL"
    assert "git checkout -- data/MNIST/raw" in data.fix
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  data" in out and "fix:" in out and "Not ready: fix data" in out


def test_corrupt_data_file_is_reported(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data_root() / "MNIST" / "raw"
    for name in FILES:
        shutil.copy(source / f"{name}.gz", raw / f"{name}.gz")
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00" * 10_008)  # right size, wrong bytes
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))
    data = _by_name(doctor.doctor_report())["data"]
    assert data.status == "FAIL"
    assert "corrupt" in data.value and "t10k-labels" in data.value


def test_missing_optional_package_warns_but_essential_one_fails(monkeypatch):
    real_import = doctor.importlib.import_module

    def fake_import(name, *args):
        if name in {"nbval", "tqdm"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", fake_import)
    rows = _by_name(doctor.doctor_report())
    assert rows["nbval"].status == "WARN"
    assert rows["tqdm"].status == "FAIL"
    assert "pip install tqdm" in rows["tqdm"].fix
    text = doctor.format_report(list(rows.values()))
    assert "Not ready: fix tqdm" in text


@pytest.mark.parametrize("version, ok", [((3, 9), False), ((3, 12), True)])
def test_python_version_check(monkeypatch, version, ok):
    monkeypatch.setattr(doctor.sys, "version_info", (*version, 0, "final", 0))
    row = doctor._python_row()
    assert row.ok is ok
    assert ("3.10 or newer" in row.fix) is not ok


def test_off_colab_there_is_no_colab_row(monkeypatch):
    monkeypatch.delitem(doctor.sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    assert doctor.on_colab() is False
    assert "colab" not in _by_name(doctor.doctor_report())


def _on_colab_without_jupyterlab(monkeypatch):
    monkeypatch.setitem(doctor.sys.modules, "google.colab", types.ModuleType("google.colab"))
    real_import = doctor.importlib.import_module

    def fake_import(name, *args):
        if name == "jupyterlab":
            raise ModuleNotFoundError("No module named 'jupyterlab'")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", fake_import)


def test_on_colab_the_report_says_so_and_what_it_found(monkeypatch, capsys):
    _on_colab_without_jupyterlab(monkeypatch)
    monkeypatch.setenv("LORA_TEACH_DATA", str(data_root()))
    rows = _by_name(doctor.doctor_report())
    assert rows["colab"].ok, rows["colab"]
    assert rows["colab"].value.startswith("on Google Colab: lora_teach from ")
    assert f"Colab's own torch {torch.__version__}" in rows["colab"].value
    assert f"data in {data_root()}" in rows["colab"].value
    assert rows["jupyterlab"].ok and "not needed on Colab" in rows["jupyterlab"].value
    assert cli.main(["doctor"]) == 0
    assert "OK    colab" in capsys.readouterr().out


def test_on_colab_before_the_setup_cell_the_fix_says_run_it(monkeypatch):
    _on_colab_without_jupyterlab(monkeypatch)
    monkeypatch.delenv("LORA_TEACH_DATA", raising=False)
    row = _by_name(doctor.doctor_report())["colab"]
    assert row.status == "FAIL" and "LORA_TEACH_DATA not set" in row.value
    assert "Colab setup cell" in row.fix


def test_on_colab_every_fix_is_colab_advice_never_the_local_install(monkeypatch, tmp_path):
    _on_colab_without_jupyterlab(monkeypatch)
    real_import = doctor.importlib.import_module

    def without_tqdm(name, *args):
        if name in {"tqdm", "jupyterlab"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", without_tqdm)
    monkeypatch.setenv("LORA_TEACH_DATA", str(tmp_path))  # no MNIST there
    rows = _by_name(doctor.doctor_report())
    assert rows["tqdm"].status == "FAIL" and "Colab setup cell" in rows["tqdm"].fix
    assert "%pip install tqdm" in rows["tqdm"].fix
    assert rows["data"].status == "FAIL" and "Colab setup cell" in rows["data"].fix
    assert rows["nbval"].ok and "not needed on Colab" in rows["nbval"].value
    text = doctor.format_report(list(rows.values()))
    assert ".[test,lab]" not in text and "pip install -e" not in text


def test_off_colab_a_missing_package_gets_the_course_install(monkeypatch):
    monkeypatch.delitem(doctor.sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(doctor, "on_colab", lambda: False)
    real_import = doctor.importlib.import_module

    def without_tqdm(name, *args):
        if name == "tqdm":
            raise ModuleNotFoundError("No module named 'tqdm'")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", without_tqdm)
    assert '.[test,lab]"' in _by_name(doctor.doctor_report())["tqdm"].fix


def test_paths_are_shown_as_a_reader_finds_them(monkeypatch, tmp_path):
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(course / "notebooks")
    assert doctor.shown_path(course / "data" / "MNIST" / "raw") == "../data/MNIST/raw"
    assert doctor.shown_path(course / "notebooks" / "x") == "x"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert doctor.shown_path(tmp_path / "home" / "mnist") == "~/mnist"
    assert doctor.shown_path("/usr/share/mnist") == "/usr/share/mnist"


def test_the_data_row_shows_no_absolute_path_from_the_course_folder(monkeypatch):
    monkeypatch.delenv("LORA_TEACH_DATA", raising=False)
    monkeypatch.chdir(data_root().parent / "notebooks")
    assert (
        _by_name(doctor.doctor_report())["data"].value
        == "MNIST in ../data/MNIST/raw (4 files, MD5 sums match)"
    )


def test_doctor_prints_each_row_as_its_check_ends_not_all_at_the_end(monkeypatch, capsys):
    """Importing torch takes seconds (29 s on a loaded laptop): the user sees a first line at once, then each
    row when its check ends."""
    seen = []

    def rows():
        seen.append(capsys.readouterr().out)  # before any check: the header is already out
        yield doctor.DoctorRow("python", "3.11", True)
        seen.append(capsys.readouterr().out)  # before the next check: the first row is already out
        yield doctor.DoctorRow("torch", "not installed", False, "pip install torch")

    monkeypatch.setattr(doctor, "doctor_rows", rows)
    assert doctor.run(None) == 1
    assert seen[0].startswith("Checking Python") and "python" not in seen[0].split("\n", 1)[1]
    assert "OK    python" in seen[1] and "torch" not in seen[1].split("\n", 1)[1]
    assert "Not ready: fix torch" in capsys.readouterr().out
