"""The eight committed TinyGPT adapters of notebook 11: their texts, their files and checksums, and the
command that retrains them (refusing to overwrite without --force)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lora_teach import gpt_adapters
from lora_teach.cli import main
from lora_teach.gpt import _text, gpt_data_dir, load_corpus
from lora_teach.gpt_adapters import ADAPTERS, SHA256, TARGETS, adapter_text, code_modules, course_adapters
from lora_teach.peft_format import read_adapter_config
from lora_teach.serving import AdapterBank

CODE_MODULES = ["argparse", "dataclasses", "functools", "fractions", "statistics", "random", "textwrap"]


def test_the_code_corpus_splits_into_its_seven_modules_and_back():
    modules = code_modules()
    assert list(modules) == CODE_MODULES  # scripts/make_text_corpora.py's order
    rebuilt = "".join(f"# ===== {name}.py =====\n{source}" for name, source in modules.items())
    assert rebuilt == _text("code")
    assert all(source.strip() for source in modules.values())


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_each_adapters_text_splits_ninety_ten_without_overlap(name):
    train, val = adapter_text(name, "train"), adapter_text(name, "val")
    assert len(val) > 128  # enough for a window of TinyGPT's context
    assert 0.85 < len(train) / (len(train) + len(val)) < 0.95
    if name == "prose":
        assert torch.equal(train, load_corpus("prose", "train"))


def test_adapter_text_refuses_bad_names_and_splits():
    with pytest.raises(ValueError, match="name must be one of"):
        adapter_text("json", "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        adapter_text("random", "test")


def test_every_committed_file_has_its_sha256_and_provenance():
    folders = course_adapters()
    assert list(folders) == list(ADAPTERS)
    assert len(SHA256) == 2 * len(ADAPTERS)
    provenance = json.loads((gpt_data_dir() / "adapters" / "provenance.json").read_text())
    for name, record in provenance["adapters"].items():
        for file, digest in record["sha256"].items():
            assert SHA256[f"{name}/{file}"] == digest
    assert provenance["train"] == gpt_adapters.TRAIN


def test_the_committed_adapters_have_the_ranks_and_targets_they_are_listed_with():
    folders = course_adapters()
    for name, (_, targets, r) in ADAPTERS.items():
        config = read_adapter_config(folders[name])
        assert config["r"] == r and config["lora_alpha"] == 8 and not config["rank_pattern"]
        adapted = {t.rpartition(".")[2] for t in config["target_modules"]}
        assert adapted == set(TARGETS[targets]), name
    from lora_teach.gpt import pretrained_tiny_gpt

    bank = AdapterBank(pretrained_tiny_gpt(), folders)
    assert bank.names == tuple(ADAPTERS)


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of the data folder the adapters need, found through LORA_TEACH_DATA."""
    root = tmp_path / "data"
    shutil.copytree(gpt_data_dir() / "text", root / "text")
    shutil.copytree(gpt_data_dir() / "adapters", root / "adapters")
    monkeypatch.setenv("LORA_TEACH_DATA", str(root))
    return root


def test_a_changed_file_is_refused_with_how_to_regenerate_it(data_copy):
    weights = data_copy / "adapters" / "random" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its sha256.*lora-teach train-gpt-adapters --force"):
        course_adapters()


def test_a_missing_file_is_refused_with_how_to_regenerate_it(data_copy):
    (data_copy / "adapters" / "prose" / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="is missing; regenerate them with"):
        course_adapters()


def test_the_command_refuses_to_overwrite_without_force_in_one_line(tmp_path, capsys):
    (tmp_path / "prose").mkdir()
    (tmp_path / "prose" / "mine.txt").write_text("keep me")
    assert main(["train-gpt-adapters", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass --force" in err and err.count("\n") == 1
    assert (tmp_path / "prose" / "mine.txt").read_text() == "keep me"


def test_the_writer_puts_eight_loadable_folders_and_their_provenance(tmp_path, monkeypatch):
    monkeypatch.setitem(gpt_adapters.TRAIN, "steps", 1)
    monkeypatch.setitem(gpt_adapters.TRAIN, "warmup", 0)
    provenance = gpt_adapters.write_adapters(tmp_path / "out", progress=False)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([*ADAPTERS, "provenance.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adapters")]  # no staging left behind
    assert set(provenance["adapters"]) == set(ADAPTERS)
    for name, (*_, r) in ADAPTERS.items():
        assert read_adapter_config(tmp_path / "out" / name)["r"] == r
