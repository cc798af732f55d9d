"""save_adapter / load_adapter: PEFT's two files, round trips, and refusals that change nothing."""

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lora_teach import add_lora, load_adapter, lora_modules, lora_state_dict, save_adapter
from tests.conftest import TwoLayer
from tests.test_core_guarantees import assert_unchanged, snapshot

METHODS = ["wrapper", "parametrize"]


def trained(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            for p in lora.parameters(recurse=False):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def adapted(method="wrapper", **options):
    torch.manual_seed(0)
    base = TwoLayer()
    model = copy.deepcopy(base)
    add_lora(model, 2, lora_alpha=4, method=method, **options)
    return base, trained(model)


@pytest.mark.parametrize("source", METHODS)
@pytest.mark.parametrize("target", METHODS)
@pytest.mark.parametrize(
    "options",
    [{}, {"use_dora": True}, {"use_rslora": True, "rank_pattern": {"head": 1}, "alpha_pattern": {"0": 3}}],
)
def test_a_saved_adapter_reloads_into_a_plain_model_with_equal_outputs(tmp_path, source, target, options):
    base, model = adapted(source, **options)
    save_adapter(model, tmp_path / "a")
    names = load_adapter(base, tmp_path / "a", method=target)
    assert names == ["encoder.0", "head"]
    x = torch.randn(4, 12)
    torch.testing.assert_close(base(x), model(x), rtol=1e-5, atol=1e-6)
    assert [(n, lo.r, lo.lora_alpha) for n, lo in lora_modules(base)] == [
        (n, lo.r, lo.lora_alpha) for n, lo in lora_modules(model)
    ]


def test_a_saved_adapter_reloads_into_a_model_with_the_same_adapters(tmp_path):
    base, model = adapted()
    save_adapter(model, tmp_path / "a")
    add_lora(base, 2, lora_alpha=4)
    load_adapter(base, tmp_path / "a")
    x = torch.randn(4, 12)
    torch.testing.assert_close(base(x), model(x))


def test_the_folder_holds_peft_config_fields_and_peft_key_names(tmp_path):
    _, model = adapted(use_dora=True, rank_pattern={"head": 1})
    save_adapter(model, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] is None
    assert (config["r"], config["lora_alpha"], config["rank_pattern"]) == (2, 4, {"head": 1})
    assert config["target_modules"] == ["encoder.0", "head"]
    assert config["use_dora"] is True and config["use_rslora"] is False and config["bias"] == "none"
    tensors = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert sorted(tensors) == sorted(
        f"base_model.model.{n}.{leaf}"
        for n in ["encoder.0", "head"]
        for leaf in ["lora_A.weight", "lora_B.weight", "lora_magnitude_vector"]
    )
    assert tensors["base_model.model.head.lora_A.weight"].shape == (1, 8)


def test_biases_travel_with_bias_all(tmp_path):
    base, model = adapted()
    with torch.no_grad():
        model.head.base_layer.bias.add_(1.0)
    save_adapter(model, tmp_path / "a", bias="all")
    assert "base_model.model.head.base_layer.bias" in load_file(tmp_path / "a" / "adapter_model.safetensors")
    load_adapter(base, tmp_path / "a")
    torch.testing.assert_close(base.head.base_layer.bias, model.head.base_layer.bias)


def three_layers():
    """Names "0", "1.0" and "2": "0" is also the end of "1.0", which PEFT's list matching would take."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4)), nn.Linear(4, 4))


def test_a_name_that_ends_another_name_is_saved_as_an_exact_pattern(tmp_path):
    model = three_layers()
    base = copy.deepcopy(model)
    add_lora(model, 2, target_modules="0|2")  # not "1.0"
    trained(model)
    save_adapter(model, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["target_modules"] == "0|2"
    load_adapter(base, tmp_path / "a")
    assert [n for n, _ in lora_modules(base)] == ["0", "2"]
    x = torch.randn(2, 4)
    torch.testing.assert_close(base(x), model(x))


def test_a_rank_for_a_name_that_ends_another_name_is_anchored(tmp_path):
    model = three_layers()
    base = copy.deepcopy(model)
    add_lora(model, 2, target_modules="0")
    add_lora(model, 1, target_modules="1\\.0|2")
    trained(model)
    save_adapter(model, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert (config["r"], config["rank_pattern"]) == (1, {"^0": 2})
    load_adapter(base, tmp_path / "a")
    assert [(n, lo.r) for n, lo in lora_modules(base)] == [("0", 2), ("1.0", 1), ("2", 1)]
    x = torch.randn(2, 4)
    torch.testing.assert_close(base(x), model(x))


def test_save_refuses_a_non_empty_folder_and_keeps_its_files(tmp_path):
    _, model = adapted()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(
        FileExistsError, match="exists and is not empty; choose another folder or pass overwrite"
    ):
        save_adapter(model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_only_the_two_adapter_files(tmp_path):
    _, model = adapted()
    save_adapter(model, tmp_path / "a")
    (tmp_path / "a" / "notes.txt").write_text("mine")
    _, other = adapted(use_dora=True)
    save_adapter(other, tmp_path / "a", overwrite=True)
    assert (tmp_path / "a" / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["use_dora"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no staging folder left behind


def test_save_into_an_existing_empty_folder_and_into_missing_parents(tmp_path):
    _, model = adapted()
    (tmp_path / "empty").mkdir()
    save_adapter(model, tmp_path / "empty")
    save_adapter(model, tmp_path / "deep" / "er")
    assert (tmp_path / "deep" / "er" / "adapter_model.safetensors").is_file()


def test_save_refuses_a_file_as_the_folder(tmp_path):
    _, model = adapted()
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        save_adapter(model, tmp_path / "f")


def test_save_refuses_adapters_that_one_config_cannot_describe_and_writes_nothing(tmp_path):
    torch.manual_seed(0)
    model = TwoLayer()
    add_lora(model, 2, target_modules=["head"], use_dora=True)
    add_lora(model, 2, target_modules=["encoder.0"])
    with pytest.raises(ValueError, match="the adapters differ in use_dora"):
        save_adapter(model, tmp_path / "a")
    assert not any(tmp_path.iterdir())


def break_file(folder, change):
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def break_config(folder, **fields):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


@pytest.mark.parametrize("into", ["plain", "adapted"])
@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: break_config(f, r=3), r"lora_A: shape \(2, 12\) in the adapter|trained with scaling 1.33"),
        (
            lambda f: break_config(f, use_dora=True),
            "missing key 'encoder.0.lora_magnitude_vector'|use_dora=True",
        ),
        (
            lambda f: break_file(f, lambda t: t["base_model.model.head.lora_B.weight"].fill_(math.nan)),
            "head.lora_B.weight holds NaN or inf",
        ),
        (
            lambda f: break_file(f, lambda t: t.pop("base_model.model.head.lora_B.weight")),
            "missing key 'head.lora_B'",
        ),
        (
            lambda f: break_file(
                f,
                lambda t: t.__setitem__("base_model.model.encoder.1.lora_A.weight", torch.zeros(2, 8)),
            ),
            "unexpected key 'encoder.1.lora_A'",
        ),
    ],
)
def test_load_refuses_a_folder_that_does_not_fit_and_changes_nothing(tmp_path, into, breakage, message):
    base, model = adapted()
    save_adapter(model, tmp_path / "a")
    breakage(tmp_path / "a")
    if into == "adapted":
        add_lora(base, 2, lora_alpha=4)
    before = snapshot(base)
    with pytest.raises(ValueError, match=message):
        load_adapter(base, tmp_path / "a")
    assert_unchanged(base, before)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"peft_type": "IA3"}, 'peft_type must be "LORA"'),
        ({"fan_in_fan_out": True}, r"PEFT options that lora_teach does not have: \['fan_in_fan_out'\]"),
        ({"modules_to_save": ["head"]}, "modules_to_save"),
        ({"target_modules": "all-linear"}, "'all-linear' is not supported"),
        ({"init_lora_weights": "olora"}, "init_lora_weights 'olora' is not supported"),
        ({"target_modules": ["decoder"]}, "target_modules entry 'decoder' matches no module"),
    ],
)
def test_load_refuses_configs_it_cannot_honour(tmp_path, fields, message):
    base, model = adapted()
    save_adapter(model, tmp_path / "a")
    break_config(tmp_path / "a", **fields)
    before = snapshot(base)
    with pytest.raises(ValueError, match=message):
        load_adapter(base, tmp_path / "a")
    assert_unchanged(base, before)


def test_load_refuses_another_alpha_for_the_same_adapters(tmp_path):
    base, model = adapted()
    save_adapter(model, tmp_path / "a")
    break_config(tmp_path / "a", lora_alpha=5)
    add_lora(base, 2, lora_alpha=4)
    before = snapshot(base)
    with pytest.raises(ValueError, match="the adapter was trained with scaling 2.5, the model's layer has 2"):
        load_adapter(base, tmp_path / "a")
    assert_unchanged(base, before)


def test_load_from_a_folder_that_is_not_an_adapter_says_so(tmp_path):
    base, _ = adapted()
    with pytest.raises(FileNotFoundError, match="is .* an adapter folder"):
        load_adapter(base, tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_adapter(base, tmp_path)


def test_lora_state_dict_and_the_file_hold_the_same_numbers(tmp_path):
    _, model = adapted()
    save_adapter(model, tmp_path / "a")
    tensors = load_file(tmp_path / "a" / "adapter_model.safetensors")
    state = lora_state_dict(model)
    assert torch.equal(tensors["base_model.model.head.lora_B.weight"], state["head.lora_B"])
