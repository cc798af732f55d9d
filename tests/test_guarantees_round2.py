"""Issue 22, "nothing lost, nothing silently wrong, round two": each numbered case of the second
adversarial pass, as a test that failed before its fix. (Items 3-5 are in test_editions.py and
test_site.py; the exercise checks of item 17 in test_exercises_robust.py.)"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from lora_teach import cli
from lora_teach.adapters import add_lora, lora_modules, merge_lora, set_lora_enabled
from lora_teach.gpt import (
    GPTConfig,
    TinyGPT,
    decode,
    generate,
    load_checkpoint,
    load_corpus,
    save_checkpoint,
    train_steps,
    vocabulary,
)
from lora_teach.lora import LinearWithLoRA
from lora_teach.peft_format import CONFIG_NAME, WEIGHTS_NAME, load_adapter, save_adapter

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SMALL = GPTConfig(vocab_size=len(vocabulary()), context=16, n_layer=1, n_head=2, d_model=16)
PRETRAIN_FAST = ["--steps", "1", "--batch-size", "1", "--no-progress"]


def main(argv: list[str]) -> int:
    """``lora-teach ARGV``'s exit status (argparse exits with SystemExit)."""
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return stop.code


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def small_gpt(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(SMALL).eval()


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))


def saved_adapter(tmp_path: Path) -> Path:
    model = mlp()
    add_lora(model, 2)
    return save_adapter(model, tmp_path / "adapter")


# ---------------------------------------------------------------- 1-2, 6: lost or overwritten data


def test_1_pretrain_gpt_leaves_an_unrelated_tmp_file_alone(tmp_path, capsys):
    (tmp_path / "mine.tmp").write_text("my notes\n")
    assert main(["pretrain-gpt", "--out", str(tmp_path / "mine.pt"), *PRETRAIN_FAST]) == 0
    assert (tmp_path / "mine.tmp").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt", "mine.tmp"]


def test_1_experiment_gpt_leaves_an_unrelated_tmp_file_alone(tmp_path, monkeypatch, capsys):
    import lora_teach.gpt_experiment as experiment

    planned = experiment.planned_runs
    monkeypatch.setattr(experiment, "planned_runs", lambda chosen: planned(chosen)[:1])
    (tmp_path / "res.tmp").write_text("my notes\n")
    assert main(["experiment-gpt", "--fast", "--out", str(tmp_path / "res.json"), "--no-progress"]) == 0
    assert (tmp_path / "res.tmp").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "res.tmp"]


def test_2_a_checkpoint_written_while_training_is_never_replaced(tmp_path, monkeypatch, capsys):
    import lora_teach.gpt as gpt

    out = tmp_path / "same.pt"
    pretrain = gpt.pretrain

    def other_run_finishes_first(**settings):
        out.write_bytes(b"the other run's checkpoint")
        return pretrain(**settings)

    monkeypatch.setattr(gpt, "pretrain", other_run_finishes_first)
    assert main(["pretrain-gpt", "--out", str(out), *PRETRAIN_FAST]) == 2
    assert "exists" in one_line_error(capsys) and str(out) in capsys.readouterr().err + str(out)
    assert out.read_bytes() == b"the other run's checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["same.pt"]  # no temporary file left


def test_2_with_force_the_checkpoint_is_replaced_and_gets_the_umask_mode(tmp_path, capsys):
    out = tmp_path / "g.pt"
    out.write_bytes(b"old")
    assert main(["pretrain-gpt", "--out", str(out), "--force", *PRETRAIN_FAST]) == 0
    assert load_checkpoint(out).config.context == 128
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_6_overwrite_replaces_config_and_weights_as_one_unit(tmp_path, monkeypatch):
    folder = saved_adapter(tmp_path)
    before = {name: (folder / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
    model = mlp()
    add_lora(model, 3)
    real_replace = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(ValueError, match=f"{folder}.*nothing in .* was changed") as error:
        save_adapter(model, folder, overwrite=True)
    monkeypatch.undo()
    assert "\n" not in str(error.value) and ".tmp" not in str(error.value)
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_6_a_saved_adapter_gets_the_umask_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        folder = saved_adapter(tmp_path)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644


def test_6_overwrite_must_be_a_real_boolean(tmp_path):
    folder = saved_adapter(tmp_path)
    model = mlp()
    add_lora(model, 2)
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        save_adapter(model, folder, overwrite="False")


# ---------------------------------------------------------------- 7-12: silently wrong


@pytest.mark.parametrize(
    "options, words",
    [
        ({"use_rslora": "False"}, "use_rslora must be True or False"),
        ({"use_dora": "no"}, "use_dora must be True or False"),
        ({"use_dora": 1}, "use_dora must be True or False"),
    ],
)
@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
def test_7_strings_are_not_booleans(options, words, method):
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=words):
        add_lora(model, 4, method=method, **options)
    assert not list(lora_modules(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_7_set_lora_enabled_takes_a_real_boolean():
    model = mlp()
    add_lora(model, 2)
    set_lora_enabled(model, False)
    with pytest.raises(ValueError, match="enabled must be True or False, got 'False'"):
        set_lora_enabled(model, "False")
    assert not any(lora.enabled for _, lora in lora_modules(model))
    set_lora_enabled(model, torch.tensor(True))  # a tensor bool is a bool
    assert all(lora.enabled for _, lora in lora_modules(model))


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
def test_8_dora_refuses_a_layer_with_an_all_zero_row_and_names_it(method):
    model = mlp()
    with torch.no_grad():
        model[2].weight[1] = 0
    with pytest.raises(ValueError, match="'2': weight row 1 is all zeros"):
        add_lora(model, 2, use_dora=True, method=method)
    assert not list(lora_modules(model))
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        LinearWithLoRA(model[2], 2, use_dora=True)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(7, 5)
        self.head = nn.Linear(5, 7, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


@pytest.mark.parametrize("method", ["wrapper", "parametrize"])
def test_9_a_merge_never_changes_a_tied_embedding(method):
    model = Tied()
    embedding = model.emb.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"'head'.weight is tied to \['emb'\]"):
        add_lora(model, 2, target_modules=["head"], method=method)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_B.normal_()
    ids = torch.arange(7)[None]
    adapted = model(ids)
    merge_lora(model)
    assert torch.equal(model.emb.weight, embedding)
    torch.testing.assert_close(model(ids), adapted, rtol=1e-5, atol=1e-5)


def test_9_pissa_refuses_a_tied_weight():
    model = Tied()
    embedding = model.emb.weight.detach().clone()
    with pytest.raises(ValueError, match=r"tied to \['emb'\]: PiSSA"):
        add_lora(model, 2, target_modules=["head"], init_lora_weights="pissa")
    assert torch.equal(model.emb.weight, embedding) and not list(lora_modules(model))


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / WEIGHTS_NAME))
    key = sorted(tensors)[0]
    tensors[key] = change(tensors[key])
    save_file(tensors, str(folder / WEIGHTS_NAME))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda t: t.to(torch.int64), "int64 values"),
        (lambda t: t > 0, "bool values"),
        (lambda t: t.fill_(float("nan")), "NaN or inf"),
    ],
)
def test_10_load_adapter_refuses_non_float_or_non_finite_tensors_naming_file_and_key(tmp_path, change, words):
    folder = saved_adapter(tmp_path)
    _rewrite_weights(folder, change)
    model = mlp()
    with pytest.raises(
        ValueError, match=f"{WEIGHTS_NAME}.*: base_model.model.0.lora_A.weight holds (torch.)?{words}"
    ) as error:
        load_adapter(model, folder)
    assert "\n" not in str(error.value) and not list(lora_modules(model))


def test_10_load_checkpoint_refuses_nan_weights_naming_file_and_key(tmp_path):
    model = small_gpt()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    save_checkpoint(model, tmp_path / "g.pt", {})
    with pytest.raises(ValueError, match=r"g.pt: head.weight holds NaN or inf"):
        load_checkpoint(tmp_path / "g.pt")


def test_11_decode_refuses_ids_outside_the_vocabulary():
    for ids in ([-1], [len(vocabulary())]):
        with pytest.raises(ValueError, match="ids must be token ids from 0 to"):
            decode(ids)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
        ({"batch_size": -2}, "batch_size must be a whole number of at least 1"),
        ({"lr": float("inf")}, "lr must be a finite number above 0"),
        ({"lr": float("nan")}, "lr must be a finite number above 0"),
        ({"lr": 0}, "lr must be a finite number above 0"),
        ({"steps": 2.5}, "steps must be a whole number"),
    ],
)
def test_11_train_steps_refuses_bad_settings_before_changing_the_model(options, words):
    model = small_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=words):
        train_steps(model, load_corpus("prose", "train"), **{"steps": 2, "lr": 1e-3, **options})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_11_training_stops_at_the_first_non_finite_loss():
    model = small_gpt()
    with torch.no_grad():
        model.head.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="training stopped at step 1: the loss is nan"):
        train_steps(model, load_corpus("prose", "train"), steps=3, lr=1e-3)


def test_11_pretrain_gpt_batch_size_0_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["pretrain-gpt", "--out", str(out), "--batch-size", "0", "--steps", "1"]) == 2
    assert "--batch-size: expected a positive integer" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"n": -5}, "n must be a whole number of at least 0"),
        ({"n": 2.5}, "n must be a whole number"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"temperature": "0.8"}, "temperature must be a finite number >= 0"),
        ({"temperature": None}, "temperature must be a finite number >= 0"),
        ({"seed": 2**64}, "seed must be a whole number from 0 to 2\\*\\*64 - 1"),
        ({"seed": -1}, "seed must be a whole number"),
    ],
)
def test_11_and_16_generate_refuses_bad_arguments_in_one_line(options, words):
    with pytest.raises(ValueError, match=words) as error:
        generate(small_gpt(), "a", **{"n": 3, **options})
    assert "\n" not in str(error.value)


def test_16_generate_refuses_a_model_whose_vocabulary_does_not_fit():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=20, context=16, n_layer=1, n_head=2, d_model=16))
    with pytest.raises(ValueError, match="vocab_size is 20"):
        generate(model, "z", n=2)


def test_16_train_steps_refuses_a_corpus_no_longer_than_the_context():
    with pytest.raises(ValueError, match="ids must hold at least context \\+ 2 = 18 tokens"):
        train_steps(small_gpt(), load_corpus("prose", "train")[:17], steps=1, lr=1e-3)


def test_12_bench_only_that_names_nothing_is_refused(capsys):
    assert main(["bench", "--only", ","]) == 2
    assert "--only ',' names no figure" in one_line_error(capsys)


# ---------------------------------------------------------------- 13-17: tracebacks and unclear messages


def test_13_merge_lora_on_a_bare_wrapper_returns_the_merged_linear():
    torch.manual_seed(0)
    wrapper = LinearWithLoRA(nn.Linear(4, 4), 1)
    with torch.no_grad():
        wrapper.lora_B.normal_()
    x = torch.randn(3, 4)
    expected = wrapper(x)
    merged = merge_lora(wrapper)
    assert type(merged) is nn.Linear
    torch.testing.assert_close(merged(x), expected)


def test_13_the_wrapper_is_refused_for_multihead_attention_and_parametrize_works():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(4, 2))
    with pytest.raises(
        ValueError, match="'0.out_proj' is the out_proj of an nn.MultiheadAttention.*parametrize"
    ):
        add_lora(model, 2)
    assert not list(lora_modules(model))
    add_lora(model, 2, method="parametrize")
    x = torch.randn(3, 1, 4)
    assert model[0](x, x, x)[0].shape == (3, 1, 4)


def test_13_a_module_containing_itself_is_one_line():
    model = mlp()
    model[0].loop = model
    with pytest.raises(ValueError, match="the model contains itself: '0.loop'"):
        add_lora(model, 2)


def test_13_a_lazy_linear_says_to_run_a_forward_pass_first():
    model = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match="shape is not known yet; run one forward pass"):
        add_lora(model, 2)


def test_13_meta_weights_are_refused_with_how_to_load_them():
    with torch.device("meta"):
        model = mlp()
    with pytest.raises(ValueError, match="on the meta device"):
        add_lora(model, 2)


def _weights(folder: Path) -> Path:
    return folder / WEIGHTS_NAME


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"\x00" * 8 + p.read_bytes()[8:]),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(struct.pack("<Q", 2**62) + b"{}"),
    ],
    ids=["truncated", "bad header", "empty", "huge header"],
)
def test_14_a_corrupt_weights_file_is_one_line_naming_it(tmp_path, corrupt):
    folder = saved_adapter(tmp_path)
    corrupt(_weights(folder))
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME}' is not a readable safetensors file") as error:
        load_adapter(mlp(), folder)
    assert "\n" not in str(error.value)


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not ...}
    (folder / CONFIG_NAME).write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"r": ...}, "no 'r'"),
        ({"target_modules": 5}, "'target_modules' must be a list of module names"),
        ({"use_dora": "no"}, "'use_dora' must be true or false"),
        ({"r": "2"}, "'r' must be a whole number"),
        ({"rank_pattern": [1]}, "'rank_pattern' must be an object"),
    ],
)
def test_14_a_config_with_a_wrong_field_names_the_file_and_field(tmp_path, changes, words):
    folder = saved_adapter(tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(ValueError, match=f"{CONFIG_NAME}'?: {words}"):
        load_adapter(mlp(), folder)


def test_14_binary_garbage_or_a_folder_for_a_file_is_one_line(tmp_path):
    folder = saved_adapter(tmp_path)
    (folder / CONFIG_NAME).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="is not text"):
        load_adapter(mlp(), folder)
    (folder / CONFIG_NAME).unlink()
    (folder / CONFIG_NAME).mkdir()
    with pytest.raises(ValueError, match=f"{CONFIG_NAME}' is a folder, not a file"):
        load_adapter(mlp(), folder)
    other = saved_adapter(tmp_path / "b")
    _weights(other).unlink()
    _weights(other).mkdir()
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME}' is a folder, not a file"):
        load_adapter(mlp(), other)


def test_14_an_unknown_method_is_refused_even_when_adapters_exist(tmp_path):
    folder = saved_adapter(tmp_path)
    model = mlp()
    add_lora(model, 2)
    with pytest.raises(ValueError, match="method must be 'wrapper' or 'parametrize', got 'bogus'"):
        load_adapter(model, folder, method="bogus")


def test_14_a_failed_save_names_the_folder_not_a_temporary_one(tmp_path, monkeypatch):
    import safetensors.torch

    def disk_full(tensors, filename, metadata=None):
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    model = mlp()
    add_lora(model, 2)
    with pytest.raises(ValueError, match=f"save_adapter folder {tmp_path / 'a'}: could not write") as error:
        save_adapter(model, tmp_path / "a")
    assert ".tmp" not in str(error.value) and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "not a TinyGPT checkpoint \\(torch.load: "),
        (b"just some text\n", "not a TinyGPT checkpoint \\(torch.load: "),
    ],
    ids=["empty", "text"],
)
def test_15_load_checkpoint_names_the_file_for_anything_else(tmp_path, content, words):
    (tmp_path / "g.pt").write_bytes(content)
    with pytest.raises(ValueError, match=words) as error:
        load_checkpoint(tmp_path / "g.pt")
    assert "g.pt" in str(error.value) and "\n" not in str(error.value)


def test_15_a_foreign_pickle_never_suggests_weights_only_false(tmp_path):
    torch.save({"config": {}, "thing": Path("x")}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="g.pt is not a TinyGPT checkpoint") as error:
        load_checkpoint(tmp_path / "g.pt")
    assert "weights_only" not in str(error.value)


def test_15_an_extra_config_key_is_named(tmp_path):
    model = small_gpt()
    save_checkpoint(model, tmp_path / "g.pt", {})
    saved = torch.load(tmp_path / "g.pt", weights_only=True)
    saved["config"]["dropout"] = 1
    torch.save(saved, tmp_path / "g.pt")
    with pytest.raises(ValueError, match=r"g.pt: 'config' must give .*unknown \['dropout'\]"):
        load_checkpoint(tmp_path / "g.pt")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--batch-size", "-2"], "--batch-size: expected a positive integer"),
        (["--lr", "inf"], "--lr: expected a finite number above 0"),
        (["--seed", "-1"], "--seed: expected a whole number"),
    ],
)
def test_17_pretrain_gpt_refuses_bad_options_before_training(tmp_path, capsys, argv, words):
    assert main(["pretrain-gpt", "--out", str(tmp_path / "g.pt"), *argv]) == 2
    assert words in one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def _no_work(monkeypatch) -> None:
    import lora_teach.gpt as gpt
    import lora_teach.gpt_experiment as experiment

    monkeypatch.setattr(
        experiment, "pretrained_tiny_gpt", lambda: pytest.fail("loaded the base before --out")
    )
    monkeypatch.setattr(gpt, "pretrain", lambda **kw: pytest.fail("trained before checking --out"))


@pytest.mark.parametrize("command", [["pretrain-gpt"], ["experiment-gpt", "--fast"]])
def test_17_a_folder_or_a_path_under_a_file_as_out_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, command
):
    _no_work(monkeypatch)
    (tmp_path / "a_file").write_text("mine\n")
    for out, words in ((tmp_path, "is a folder"), (tmp_path / "a_file" / "x", "is a file, not a folder")):
        assert main([*command, "--out", str(out), "--no-progress"]) == 2
        assert words in one_line_error(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.skipif(AS_ROOT, reason="root may write anywhere")
@pytest.mark.parametrize("command", [["pretrain-gpt"], ["experiment-gpt", "--fast"]])
def test_17_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command):
    _no_work(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        assert main([*command, "--out", str(locked / "x"), "--no-progress"]) == 2
        assert "no permission" in one_line_error(capsys)
    finally:
        os.chmod(locked, 0o755)
    assert not list(locked.iterdir())


@pytest.mark.parametrize(
    "content, words",
    [
        ("[1, 2]", "not an experiment-gpt results file"),
        ("{broken", "is not valid JSON"),
        ('{"runs": [1]}', "not an"),
    ],
)
def test_17_experiment_gpt_resume_of_a_file_that_is_not_its_results(tmp_path, capsys, content, words):
    out = tmp_path / "res.json"
    out.write_text(content)
    assert main(["experiment-gpt", "--fast", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert words in one_line_error(capsys)
    assert out.read_text() == content


def test_17_bench_from_json_given_a_folder_says_so(tmp_path, capsys):
    assert main(["bench", "--from-json", str(tmp_path)]) == 2
    assert "is a folder; give the JSON file" in one_line_error(capsys)


# ---------------------------------------------------------------- 1-2 for the other commands that write results


def test_1_experiment_qlora_leaves_an_unrelated_tmp_file_alone(tmp_path, monkeypatch):
    import lora_teach.qlora_experiment as qlora

    writes = []
    real = qlora.write_new_file
    monkeypatch.setattr(qlora, "write_new_file", lambda *a, **k: writes.append(k["force"]) or real(*a, **k))
    (tmp_path / "res.tmp").write_text("my notes\n")
    qlora._write(tmp_path / "res.json", {"runs": []}, replace=False)
    assert (tmp_path / "res.tmp").read_text() == "my notes\n"
    with pytest.raises(FileExistsError, match="res.json exists"):  # a file that appeared is kept
        qlora._write(tmp_path / "res.json", {"runs": [1]}, replace=False)
    assert json.loads((tmp_path / "res.json").read_text()) == {"runs": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "res.tmp"]


def test_17_experiment_qlora_resume_of_a_list_is_one_line(tmp_path, capsys):
    out = tmp_path / "res.json"
    out.write_text("[1, 2]")
    assert main(["experiment-qlora", "--fast", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "not an experiment-qlora results file" in one_line_error(capsys)


def test_2_train_gpt_adapters_never_replaces_folders_that_appeared_while_training(
    tmp_path, monkeypatch, capsys
):
    import lora_teach.gpt_adapters as gpt_adapters

    monkeypatch.setitem(gpt_adapters.TRAIN, "steps", 1)
    monkeypatch.setitem(gpt_adapters.TRAIN, "warmup", 0)
    out = tmp_path / "out"
    train = gpt_adapters.train_adapter

    def another_run_writes_meanwhile(name, *args):
        if name == "prose":
            (out / "prose").mkdir(parents=True)
            (out / "prose" / "mine.txt").write_text("keep me")
        return train(name, *args)

    monkeypatch.setattr(gpt_adapters, "train_adapter", another_run_writes_meanwhile)
    assert main(["train-gpt-adapters", "--out", str(out), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "pass --force" in err and ".adapters" not in err
    assert [p.name for p in out.iterdir()] == ["prose"] and (
        out / "prose" / "mine.txt"
    ).read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- the fresh pass after the fixes (not in the issue)


def test_fresh_numpy_bool_is_a_boolean_and_a_dict_is_not_a_target_list():
    import numpy as np

    model = mlp()
    add_lora(model, 2)
    set_lora_enabled(model, np.bool_(False))
    assert not any(lora.enabled for _, lora in lora_modules(model))
    with pytest.raises(TypeError, match="not a dict"):
        add_lora(mlp(), 2, target_modules={"0": 1})


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_fresh_load_lora_state_dict_never_casts_integer_or_bool_tensors(dtype):
    from lora_teach.adapters import load_lora_state_dict, lora_state_dict

    model = mlp()
    add_lora(model, 2)
    state = lora_state_dict(model)
    state["0.lora_A"] = torch.ones_like(state["0.lora_A"]).to(dtype)
    with pytest.raises(ValueError, match=f"0.lora_A: holds {dtype} values"):
        load_lora_state_dict(model, state)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"rank_pattern": {"(": 2}}, "'rank_pattern' key '\\(' is not a valid regular expression"),
        ({"rank_pattern": {"0": "2"}}, "'rank_pattern' value for '0' must be a whole number"),
        ({"alpha_pattern": {"0": -1}}, "'alpha_pattern' value for '0' must be a finite number above 0"),
    ],
)
def test_fresh_patterns_are_checked_even_when_the_model_has_adapters(tmp_path, changes, words):
    folder = saved_adapter(tmp_path)
    _edit_config(folder, **changes)
    model = mlp()
    add_lora(model, 2)
    with pytest.raises(ValueError, match=words):
        load_adapter(model, folder)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: decode([1.5]), "ids must be a 1-D sequence of whole-number token ids"),
        (lambda: decode(torch.tensor([[1, 2]])), "ids must be a 1-D sequence"),
        (lambda: decode("abc"), "ids must be a 1-D sequence"),
        (lambda: __import__("lora_teach.gpt").gpt.encode(5), "text must be a string"),
        (lambda: small_gpt()(torch.tensor([[500]])), "ids must be token ids from 0 to"),
        (lambda: small_gpt()(torch.tensor([[-1]])), "ids must be token ids from 0 to"),
        (lambda: small_gpt()(torch.zeros(1, 3)), "ids must be integer token ids"),
        (lambda: GPTConfig(d_model=10, n_head=4), "d_model \\(10\\) must be a multiple of n_head \\(4\\)"),
        (lambda: GPTConfig(n_layer=0), "n_layer must be a whole number of at least 1"),
        (lambda: GPTConfig(context=-1), "context must be a whole number of at least 1"),
    ],
)
def test_fresh_tiny_gpt_refuses_bad_ids_and_configs_in_one_line(call, words):
    with pytest.raises(ValueError, match=words) as error:
        call()
    assert "\n" not in str(error.value)


def test_fresh_bits_per_char_refuses_a_negative_max_chars():
    from lora_teach.gpt import bits_per_char

    with pytest.raises(ValueError, match="max_chars must be a whole number of at least 1, got -5"):
        bits_per_char(small_gpt(), load_corpus("prose", "val"), max_chars=-5)


def test_fresh_a_corrupt_digitsnet_checkpoint_names_the_file(tmp_path, monkeypatch):
    from lora_teach import experiment

    monkeypatch.setenv("LORA_TEACH_CHECKPOINTS", str(tmp_path))
    path = experiment.checkpoint_path("corrected", 0)  # the file name carries the recipe's key
    assert path.parent == tmp_path
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{path.name} is not a DigitsNet checkpoint") as error:
        experiment.pretrained_digitsnet("corrected", 0, progress=False)
    assert "weights_only" not in str(error.value)


def test_14_train_gpt_adapters_names_its_out_folder_when_a_save_fails(tmp_path, monkeypatch, capsys):
    import safetensors.torch

    import lora_teach.gpt_adapters as gpt_adapters

    monkeypatch.setitem(gpt_adapters.TRAIN, "steps", 1)
    monkeypatch.setitem(gpt_adapters.TRAIN, "warmup", 0)

    def disk_full(tensors, filename, metadata=None):
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    assert main(["train-gpt-adapters", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert f"--out {tmp_path / 'out'}: could not write the adapter prose (No space left on device)" in err
    assert ".adapters" not in err and not list(tmp_path.iterdir())


def test_17_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import lora_teach.gpt as gpt

    def disk_full(model, path, meta):
        Path(path).write_bytes(b"part of a checkpoint")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(gpt, "save_checkpoint", disk_full)
    assert main(["pretrain-gpt", "--out", str(tmp_path / "g.pt"), *PRETRAIN_FAST]) == 2
    err = one_line_error(capsys)
    assert (
        f"--out {tmp_path / 'g.pt'}: could not write it (No space left on device)" in err
        and ".tmp" not in err
    )
    assert not list(tmp_path.iterdir())
