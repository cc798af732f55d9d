"""Notebooks 00-03 show no exercise's answer (value or code) in any cell, text or output, before the
exercise asks for it."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# (notebook, question, strings that would give its answer away)
ANSWERS = [
    ("00_welcome_and_setup", "nb00.q1", ["784"]),
    ("00_welcome_and_setup", "nb00.q2", ["> 0).float()", "(image > 0)", "> 0).mean"]),
    ("01_rank_and_decomposition", "nb01.q2", ["10,240", "10240", "393,216", "393216"]),
    ("01_rank_and_decomposition", "nb01.q3", ["[r:] ** 2", "S[r:]", "s[r:]"]),
    ("01_rank_and_decomposition", "nb01.q4", ["S[:r]) @ Vh[:r]", "Vh[:r]"]),
    ("02_lora_from_the_math", "nb02.q1", ["(4, 784)", "(256, 4)", "4 × 784", "256 × 4"]),
    ("02_lora_from_the_math", "nb02.q2", ["@ lora_A.T) @ lora_B.T", "(x @ A.T) @ B.T"]),
    ("02_lora_from_the_math", "nb02.q3", ["- scaling * lora_B @ lora_A", "W - s"]),
    ("02_lora_from_the_math", "nb02.q4", ["37,748,736", "37748736", "* bytes_per_param", "37.7 MB"]),
    ("03_digitsnet_baseline", "nb03.q1", ["5,421", "5421", "bincount(y_train"]),
    ("03_digitsnet_baseline", "nb03.q2", ["235,146", "235146"]),
    ("03_digitsnet_baseline", "nb03.q3", ["argsort(", "error_rates"]),
    ("03_digitsnet_baseline", "nb03.q4", ["W3 @ W2 @ W1", "W_3W_2W_1", "W3 @ (W2 @ b1"]),
]


def _cell_texts(cell) -> list[str]:
    texts = [cell.source]
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(output["text"])
        texts.append(output.get("data", {}).get("text/plain", ""))
    return texts


@pytest.mark.parametrize("name, question, giveaways", ANSWERS, ids=[q for _, q, _ in ANSWERS])
def test_no_cell_before_an_exercise_shows_its_answer(name, question, giveaways):
    cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4).cells
    asking = [i for i, cell in enumerate(cells) if f"{question}.check(" in cell.source]
    assert len(asking) == 1, f"{name}: expected one cell that checks {question}, found {len(asking)}"
    for index, cell in enumerate(cells[: asking[0]]):
        for text in _cell_texts(cell):
            for giveaway in giveaways:
                assert giveaway not in text, f"{name} cell {index} shows {giveaway!r} before {question} asks"
