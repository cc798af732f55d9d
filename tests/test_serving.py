"""AdapterBank: a mixed batch gives each row what its adapter alone gives, with every strategy, equal to
PEFT's own mixed batch on the same folders; the base is never changed; bad input gets one line."""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_teach import add_lora, lora_modules, save_adapter
from lora_teach.gpt import GPTConfig, TinyGPT, generate, vocabulary
from lora_teach.serving import BASE, STRATEGIES, AdapterBank

SMALL = GPTConfig(vocab_size=len(vocabulary()), context=16, n_layer=2, n_head=2, d_model=16)
# name -> (target_modules, r, method): different ranks, different targets, both methods
SPECS = {
    "qv": (["q_proj", "v_proj"], 2, "wrapper"),
    "mlp": (["up_proj", "down_proj"], 4, "wrapper"),
    "attn": (["q_proj", "k_proj", "v_proj", "o_proj"], 1, "parametrize"),
    "all": (["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"], 3, "wrapper"),
}
# float32 rounding: the merged strategy sums W x + s B A x in another order, up to about 2e-5 on these logits
# (300 random batches); each adapter changes them by 0.36 or more, so 1e-4 still tells every adapter apart
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def small_base(seed: int = 0, config: GPTConfig = SMALL) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(config).eval()


def adapted(base, targets, r, method="wrapper", seed=1, lora_alpha=8.0):
    """A copy of ``base`` with an adapter whose B is not zero (as after training)."""
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    add_lora(model, r, lora_alpha=lora_alpha, target_modules=targets, method=method)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The base, the adapted models, their folders in PEFT's format."""
    base = small_base()
    folder = tmp_path_factory.mktemp("adapters")
    models = {}
    for i, (name, (targets, r, method)) in enumerate(SPECS.items()):
        models[name] = adapted(base, targets, r, method, seed=i + 1)
        save_adapter(models[name], folder / name)
    return base, models, {name: folder / name for name in SPECS}


def ids_for(rows: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, SMALL.vocab_size, (rows, length), generator=torch.Generator().manual_seed(seed))


def alone(base, models, ids, names):
    """Each row through its adapter's own model (the base for "__base__"), the whole batch at once."""
    with torch.no_grad():
        outs = {name: (base if name == BASE else models[name])(ids) for name in set(names)}
    return torch.stack([outs[name][i] for i, name in enumerate(names)])


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


@contextmanager
def refused(error, match):
    """The block raises ``error`` with a message that matches ``match`` and is one line."""
    with pytest.raises(error, match=match) as caught:
        yield caught
    assert "\n" not in str(caught.value), str(caught.value)


NAMES = ["qv", "mlp", BASE, "attn", "qv", "all", "mlp"]


@pytest.mark.parametrize("source", ["folders", "models"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_gives_each_row_what_its_adapter_alone_gives(setup, strategy, source):
    base, models, folders = setup
    bank = AdapterBank(base, folders if source == "folders" else models)
    ids = ids_for(len(NAMES))
    before = snapshot(base)
    out = bank(ids, NAMES, strategy=strategy)
    torch.testing.assert_close(out, alone(base, models, ids, NAMES), **TOLERANCE)
    assert_same_state(base, before)
    assert not any(True for _ in lora_modules(base))


def test_a_batch_of_one_adapter_and_of_the_base_alone(setup):
    base, models, folders = setup
    bank = AdapterBank(base, folders)
    ids = ids_for(3)
    for strategy in STRATEGIES:
        torch.testing.assert_close(bank(ids, ["all"] * 3, strategy), models["all"](ids), **TOLERANCE)
        assert torch.equal(bank(ids, [BASE] * 3, strategy), base(ids))


def test_the_bank_keeps_copies_so_later_training_of_the_model_does_not_leak_in(setup):
    base, models, _ = setup
    model = copy.deepcopy(models["qv"])
    bank = AdapterBank(base, {"qv": model})
    ids = ids_for(2)
    expected = bank(ids, ["qv", "qv"])
    with torch.no_grad():
        for _, lora in lora_modules(model):
            lora.lora_B.add_(1.0)
    assert torch.equal(bank(ids, ["qv", "qv"]), expected)


# ---------------------------------------------------------------- against PEFT's own mixed batch


@pytest.fixture(scope="module")
def peft_model(setup):
    peft = pytest.importorskip("peft", reason="the PEFT cross-checks need `pip install -e .[peft]`")
    base, _, folders = setup
    names = list(folders)
    model = peft.PeftModel.from_pretrained(copy.deepcopy(base), folders[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(folders[name], adapter_name=name)
    return model.eval()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_equals_peft_mixed_batch_on_the_same_folders(setup, peft_model, strategy):
    base, _, folders = setup
    bank = AdapterBank(base, folders)
    ids = ids_for(len(NAMES), seed=3)
    with torch.no_grad():
        theirs = peft_model(ids, adapter_names=NAMES)
    before = snapshot(base)
    ours = bank(ids, NAMES, strategy=strategy)
    assert_same_state(base, before)
    if strategy == "grouped":  # PEFT's own computation, step for step
        assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours, theirs, **TOLERANCE)


def test_peft_and_the_bank_both_refuse_an_unknown_name(setup, peft_model):
    base, _, folders = setup
    ids = ids_for(2)
    with pytest.raises(ValueError, match="non-existing adapter"):
        peft_model(ids, adapter_names=["qv", "typo"])
    with refused(ValueError, match="unknown adapter name"):
        AdapterBank(base, folders)(ids, ["qv", "typo"])


@given(
    names=st.lists(st.sampled_from([*SPECS, BASE]), min_size=1, max_size=6),
    length=st.integers(1, SMALL.context),
    seed=st.integers(0, 2**16),
)
def test_any_list_of_names_gives_peft_mixed_batch_with_every_strategy(setup, peft_model, names, length, seed):
    base, _, folders = setup
    bank = AdapterBank(base, folders)
    ids = ids_for(len(names), length, seed)
    with torch.no_grad():
        theirs = peft_model(ids, adapter_names=names)
    for strategy in STRATEGIES:
        torch.testing.assert_close(bank(ids, names, strategy), theirs, **TOLERANCE)


@given(
    ranks=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    picks=st.lists(st.integers(0, 10), min_size=1, max_size=6),
    data=st.data(),
)
def test_any_ranks_and_targets_give_each_adapter_alone(ranks, picks, data):
    base = small_base(seed=len(ranks))
    layers = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    models = {}
    for i, r in enumerate(ranks):
        targets = data.draw(st.lists(st.sampled_from(layers), min_size=1, max_size=6, unique=True))
        models[f"a{i}"] = adapted(base, targets, r, seed=i, lora_alpha=data.draw(st.sampled_from([1, 8, 16])))
    choices = [*models, BASE]
    names = [choices[p % len(choices)] for p in picks]
    ids = ids_for(len(names), seed=len(picks))
    bank = AdapterBank(base, models)
    expected = alone(base, models, ids, names)
    before = snapshot(base)
    for strategy in STRATEGIES:
        torch.testing.assert_close(bank(ids, names, strategy), expected, **TOLERANCE)
    assert_same_state(base, before)


# ---------------------------------------------------------------- generation and memory


def test_generate_writes_what_each_adapter_alone_writes_for_prompts_of_any_length(setup):
    base, models, folders = setup
    bank = AdapterBank(base, folders)
    prompts = ["def ", "The ", "x", "class A"]
    names = ["qv", BASE, "all", "qv"]
    for temperature in (0.8, 0.0):
        texts = bank.generate(prompts, names, n=12, temperature=temperature, seed=4)
        for prompt, name, text in zip(prompts, names, texts):
            model = base if name == BASE else models[name]
            assert text == generate(model, prompt, 12, temperature=temperature, seed=4)
    assert bank.generate(["ab", "c"], ["qv", "mlp"], n=0) == ["ab", "c"]


def test_memory_counts_the_base_the_factors_and_what_merged_copies_would_cost(setup):
    base, _, folders = setup
    bank = AdapterBank(base, folders)
    memory = bank.memory()
    base_bytes = 4 * sum(p.numel() for p in base.parameters())
    assert memory.base_bytes == base_bytes
    shapes = {"q_proj": (16, 16), "k_proj": (16, 16), "v_proj": (16, 16), "o_proj": (16, 16)}
    shapes |= {"up_proj": (16, 64), "down_proj": (64, 16)}
    for name, (targets, r, _) in SPECS.items():
        expected = SMALL.n_layer * sum(r * sum(shapes[t]) for t in targets) * 4
        assert memory.adapter_bytes[name] == expected, name
    assert memory.merged_copies_bytes == len(SPECS) * base_bytes
    assert memory.gather_bytes == 0  # built on first use
    bank(ids_for(2), ["qv", "mlp"], "gather")
    assert bank.memory().gather_bytes > 0
    assert bank.memory().total_bytes == base_bytes + memory.adapters_bytes + bank.memory().gather_bytes


def test_groups_lists_rows_per_name_in_order_of_first_appearance():
    assert AdapterBank.groups(["b", "a", "b", BASE]) == {"b": [0, 2], "a": [1], BASE: [3]}


# ---------------------------------------------------------------- bad input, one line each


@pytest.fixture(scope="module")
def bank(setup):
    base, _, folders = setup
    return AdapterBank(base, folders)


@pytest.mark.parametrize(
    "names, strategy, error, words",
    [
        (
            ["qv", "nope", "qv"],
            "grouped",
            ValueError,
            "unknown adapter name(s) 'nope'; the bank holds 'qv', 'mlp'",
        ),
        (["qv", "qv"], "grouped", ValueError, "adapter_names has 2 names for 3 rows"),
        ("qv", "grouped", TypeError, "one name per row, got 'qv'"),
        (["qv", 3, "qv"], "grouped", TypeError, "adapter_names[1] must be a string"),
        (["qv"] * 3, "fastest", ValueError, "strategy must be one of ('grouped', 'gather', 'merged')"),
    ],
)
def test_bad_names_and_strategies_get_one_line(bank, names, strategy, error, words):
    with pytest.raises(error) as caught:
        bank(ids_for(3), names, strategy=strategy)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_name_also_names_the_base(bank):
    with refused(ValueError, match="'__base__' for the base alone"):
        bank(ids_for(1), ["QV"])


def test_an_empty_batch_gets_one_line(bank):
    for ids in (ids_for(0), torch.zeros(0, 4, dtype=torch.long)):
        with refused(ValueError, match=r"empty batch \(0 rows\)"):
            bank(ids, [])


def test_generate_refuses_bad_prompts_in_one_line(bank):
    for prompts, names, words in [
        ([], [], "empty batch"),
        (["a", ""], ["qv", "qv"], "at least one character"),
        (["a"], ["qv", "qv"], "2 names for 1 rows"),
        ("abc", ["qv"], "prompts must be a list"),
    ]:
        with refused((ValueError, TypeError), match=words):
            bank.generate(prompts, names, n=1)


def test_an_empty_bank_is_refused(setup):
    with refused(ValueError, match="adapters is empty"):
        AdapterBank(setup[0], {})


def test_an_adapter_for_another_model_is_refused_naming_the_layer(setup, tmp_path):
    base, _, _ = setup
    wider = small_base(
        config=GPTConfig(vocab_size=SMALL.vocab_size, context=16, n_layer=2, n_head=2, d_model=32)
    )
    save_adapter(adapted(wider, ["q_proj"], 2), tmp_path / "wide")
    with refused(ValueError, match=r"adapter 'wide' \(.*wide\) does not fit the base: .*q_proj") as caught:
        AdapterBank(base, {"wide": tmp_path / "wide"})
    assert "\n" not in str(caught.value)
    with refused(ValueError, match="'blocks.0.attn.q_proj' is 32 -> 32 in the adapter, 16 -> 16 in the base"):
        AdapterBank(base, {"wide": adapted(wider, ["q_proj"], 2)})


def test_an_adapter_whose_layer_the_base_lacks_is_refused(setup, tmp_path):
    base, models, _ = setup
    deeper = small_base(
        config=GPTConfig(vocab_size=SMALL.vocab_size, context=16, n_layer=3, n_head=2, d_model=16)
    )
    with refused(ValueError, match="adapts 'blocks.2.attn.q_proj', which is not an nn.Linear of the base"):
        AdapterBank(base, {"deep": adapted(deeper, ["q_proj"], 2)})


def test_an_adapted_model_on_another_base_of_the_same_shape_is_refused(setup):
    base, _, _ = setup
    other = adapted(small_base(seed=7), ["q_proj"], 2)
    with refused(ValueError, match="was trained on another base: its frozen 'tok_emb.weight' differs"):
        AdapterBank(base, {"other": other})


@pytest.mark.parametrize(
    "options, words",
    [
        ({"use_dora": True}, "uses DoRA"),
        ({"init_lora_weights": "pissa"}, "PiSSA adapter"),
    ],
)
def test_adapters_that_change_the_base_are_refused(setup, tmp_path, options, words):
    base, _, _ = setup
    model = copy.deepcopy(base)
    add_lora(model, 2, target_modules=["q_proj"], **options)
    save_adapter(model, tmp_path / "x")
    with refused(ValueError, match=words):
        AdapterBank(base, {"x": tmp_path / "x"})


def test_an_adapter_that_trains_biases_is_refused(setup, tmp_path):
    base, models, folders = setup
    folder = tmp_path / "bias"
    save_adapter(models["qv"], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "bias": "all"}))
    with refused(ValueError, match="trains biases of the base"):
        AdapterBank(base, {"bias": folder})


@pytest.mark.parametrize(
    "adapters, error, words",
    [
        ({BASE: None}, ValueError, "other than '__base__'"),
        ({"": None}, ValueError, "non-empty strings"),
        ({"x": 3}, TypeError, "adapter 'x' must be an adapter folder"),
        (["x"], TypeError, "adapters must be a dict"),
        ({"x": "no/such/folder"}, ValueError, "adapter 'x' (no/such/folder): "),
    ],
)
def test_bad_adapter_arguments_get_one_line(setup, adapters, error, words):
    with pytest.raises(error) as caught:
        AdapterBank(setup[0], adapters)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_without_lora_and_a_base_with_lora_are_refused(setup):
    base, models, _ = setup
    with refused(ValueError, match="has no LoRA layers"):
        AdapterBank(base, {"plain": copy.deepcopy(base)})
    with refused(ValueError, match="base already has LoRA layers"):
        AdapterBank(models["qv"], {"qv": models["qv"]})


def test_a_merged_adapter_is_refused(setup):
    base, models, _ = setup
    model = copy.deepcopy(models["qv"])
    for _, lora in lora_modules(model):
        lora.merge()
    with refused(ValueError, match="is merged; unmerge or enable it first"):
        AdapterBank(base, {"m": model})


def test_any_model_whose_linear_layers_see_the_batch_first_can_be_served(two_layer):
    """Not only TinyGPT: an MLP whose inputs are (batch, features)."""
    two_layer.eval()
    models = {}
    for name, (targets, r) in {"enc": (["encoder.0"], 2), "both": (None, 3)}.items():
        models[name] = adapted(two_layer, targets, r)
    bank = AdapterBank(two_layer, models)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(0))
    names = ["enc", BASE, "both", "enc", "both"]
    for strategy in STRATEGIES:
        torch.testing.assert_close(bank(x, names, strategy), alone(two_layer, models, x, names), **TOLERANCE)


def test_a_model_that_flattens_the_batch_before_a_linear_layer_is_refused_in_one_line():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, x):  # (batch, tokens, 4) -> (batch * tokens, 4) before the layer
            return self.proj(x.reshape(-1, 4)).view(x.shape)

    torch.manual_seed(0)
    model = Flat().eval()
    bank = AdapterBank(model, {"a": adapted(model, ["proj"], 2)})
    with refused(RuntimeError, match="whose first dimension is not the batch of 2 rows"):
        bank(torch.randn(2, 3, 4), ["a", BASE])
    assert bank(torch.randn(2, 3, 4), ["a", BASE], "merged").shape == (2, 3, 4)  # merging needs no rows
