"""TinyGPT: causal masking, shapes, LoRA by target name, merging, seeded generation, the committed
corpora and checkpoint against their checksums, and the two commands at fast settings."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lora_teach import cli
from lora_teach.adapters import add_lora, lora_state_dict, mark_only_lora_as_trainable, merge_lora
from lora_teach.gpt import (
    CHECKPOINT,
    SHA256,
    GPTConfig,
    TinyGPT,
    bits_per_char,
    decode,
    encode,
    generate,
    gpt_data_dir,
    load_corpus,
    pretrained_tiny_gpt,
    sha256_of,
    vocabulary,
)

SMALL = GPTConfig(vocab_size=len(vocabulary()), context=16, n_layer=2, n_head=2, d_model=16)


def small_model(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(SMALL).eval()


def test_forward_maps_ids_batch_time_to_logits_batch_time_vocab():
    ids = torch.randint(0, SMALL.vocab_size, (3, 10))
    assert small_model()(ids).shape == (3, 10, SMALL.vocab_size)


def test_forward_refuses_a_sequence_longer_than_the_context():
    with pytest.raises(ValueError, match="T <= 16"):
        small_model()(torch.zeros(1, 17, dtype=torch.long))


def test_a_later_token_never_changes_an_earlier_logit():
    model = small_model()
    ids = torch.randint(0, SMALL.vocab_size, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # the changed positions do see the change


def test_default_config_has_the_prototype_parameter_count():
    assert sum(p.numel() for p in TinyGPT(GPTConfig()).parameters()) == 832_512


def test_q_and_v_targets_adapt_two_matrices_per_block():
    model = small_model()
    adapted = add_lora(model, 2, target_modules=["q_proj", "v_proj"])
    assert adapted == [f"blocks.{i}.attn.{p}" for i in range(SMALL.n_layer) for p in ("q_proj", "v_proj")]
    mark_only_lora_as_trainable(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == SMALL.n_layer * 2 * 2 * (SMALL.d_model + SMALL.d_model)  # r (d + k) per matrix


def test_merged_model_gives_the_unmerged_logits():
    model = small_model()
    add_lora(model, 4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    with torch.no_grad():
        for name, tensor in lora_state_dict(model).items():
            if name.endswith("lora_B"):
                param = dict(model.named_parameters())[name]
                param.copy_(torch.randn_like(tensor) * 0.1)
    ids = torch.randint(0, SMALL.vocab_size, (2, 16))
    with torch.no_grad():
        before = model(ids)
        after = merge_lora(model)(ids)
    assert not any("lora" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_generation_with_a_fixed_seed_is_reproducible():
    model = small_model()
    a = generate(model, "def ", 30, temperature=1.0, seed=3)
    b = generate(model, "def ", 30, temperature=1.0, seed=3)
    c = generate(model, "def ", 30, temperature=1.0, seed=4)
    assert a == b and a.startswith("def ") and len(a) == 34
    assert a != c


def test_generation_refuses_a_negative_temperature():
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        generate(small_model(), "a", 3, temperature=-1.0)


def test_encode_then_decode_returns_the_text():
    text = "def f(x):\n    return x  # “quoted”"
    assert decode(encode(text)) == text


def test_encode_names_characters_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        encode("snowman ☃")


def test_corpora_split_ninety_ten_and_verify_against_their_checksums():
    for name in ("prose", "code"):
        path = gpt_data_dir() / f"text/{name}.txt"
        assert sha256_of(path) == SHA256[f"text/{name}.txt"]
        train, val = load_corpus(name, "train"), load_corpus(name, "val")
        total = len(path.read_text(encoding="utf-8"))
        assert len(train) + len(val) == total and abs(len(val) / total - 0.10) < 1e-3


@pytest.mark.parametrize(
    "name, split, words", [("poetry", "train", "name must be"), ("code", "test", "split must")]
)
def test_load_corpus_names_a_bad_argument(name, split, words):
    with pytest.raises(ValueError, match=words):
        load_corpus(name, split)


def test_committed_checkpoint_verifies_and_predicts_prose_better_than_code():
    assert SHA256[CHECKPOINT] and sha256_of(gpt_data_dir() / CHECKPOINT) == SHA256[CHECKPOINT]
    model = pretrained_tiny_gpt()
    prose = bits_per_char(model, load_corpus("prose", "val"), 2048)
    code = bits_per_char(model, load_corpus("code", "val"), 2048)
    assert prose < 2.5 < code


def _copy_data(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(gpt_data_dir() / "text", data / "text")
    shutil.copy(gpt_data_dir() / CHECKPOINT, data / CHECKPOINT)
    monkeypatch.setenv("LORA_TEACH_DATA", str(data))
    return data


def test_a_corrupted_checkpoint_is_refused_with_how_to_regenerate(tmp_path, monkeypatch):
    data = _copy_data(tmp_path, monkeypatch)
    raw = bytearray((data / CHECKPOINT).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / CHECKPOINT).write_bytes(bytes(raw))
    with pytest.raises(
        ValueError, match="does not match its sha256.*lora-teach pretrain-gpt --force"
    ) as error:
        pretrained_tiny_gpt()
    assert "\n" not in str(error.value)


def test_a_missing_checkpoint_says_how_to_regenerate(tmp_path, monkeypatch):
    data = _copy_data(tmp_path, monkeypatch)
    (data / CHECKPOINT).unlink()
    with pytest.raises(FileNotFoundError, match="is missing; regenerate it with `lora-teach pretrain-gpt"):
        pretrained_tiny_gpt()


def test_pretrain_gpt_writes_a_loadable_checkpoint_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "gpt.pt"
    args = ["pretrain-gpt", "--out", str(out), "--steps", "2", "--batch-size", "2", "--no-progress"]
    assert cli.main(args) == 0
    first = out.read_bytes()
    weights = torch.load(out, weights_only=True)["state_dict"]
    assert f"sha256 {sha256_of(out)}" in capsys.readouterr().out
    assert cli.main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == first
    assert cli.main([*args, "--force"]) == 0
    again = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(again[k], v) for k, v in weights.items())  # same seed, one thread: same weights


def test_pretrain_gpt_refuses_zero_steps(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["pretrain-gpt", "--out", str(tmp_path / "g.pt"), "--steps", "0"])
    assert stop.value.code == 2
    assert "--steps: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "g.pt").exists()


def test_experiment_gpt_fast_writes_every_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert cli.main(["experiment-gpt", "--fast", "--out", str(out), "--no-progress"]) == 0
    results = json.loads(out.read_text())
    kinds = {(r["kind"], r["targets"], r["r"], r["seed"]) for r in results["runs"]}
    assert (
        ("full", None, None, 0) in kinds and ("lora", "qv", 8, 1) in kinds and ("lora", "qv", 2, 0) in kinds
    )
    qv8 = next(r for r in results["runs"] if r["targets"] == "qv" and r["r"] == 8)
    assert qv8["trainable"] == 4 * 2 * 8 * 256
    assert cli.main(["experiment-gpt", "--fast", "--out", str(out), "--no-progress"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli.main(["experiment-gpt", "--fast", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert json.loads(out.read_text())["runs"] == results["runs"]  # nothing left to do, nothing rerun


def test_run_experiment_names_unknown_settings(tmp_path):
    from lora_teach.gpt_experiment import run_experiment

    with pytest.raises(ValueError, match="settings must be one of"):
        run_experiment(tmp_path / "r.json", "huge")


def test_run_experiment_refuses_force_and_resume_together(tmp_path):
    from lora_teach.gpt_experiment import run_experiment

    with pytest.raises(ValueError, match="either force"):
        run_experiment(tmp_path / "r.json", "fast", force=True, resume=True)
    assert not (tmp_path / "r.json").exists()


def test_fine_tuning_leaves_the_base_model_unchanged():
    from lora_teach.gpt_experiment import fine_tune_once

    base = small_model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    _, record = fine_tune_once(base, "lora", "qv", 2, 1e-2, seed=0, steps=2, batch_size=2, eval_chars=64)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert record["trainable"] == SMALL.n_layer * 2 * 2 * (2 * SMALL.d_model)
