"""The exercise machinery: what a check says for right, wrong, crashing and untouched answers."""

import pytest
import torch

from lora_teach.course.exercises import (
    CheckResult,
    Incorrect,
    NotAttempted,
    Question,
    ____,
    call_student,
    expect_close,
    expect_equal,
)

square = Question(
    "q9 square",
    lambda f: expect_equal("square(3)", call_student(f, 3, name="square"), 9),
    hints=["Multiply x by itself.", "return x * x"],
    solution="def square(x):\n    return x * x",
)
rank = Question("q1 rank", lambda r: expect_equal("rank_of_M", r, 2), ["h1", "h2"], "rank_of_M = 2")


def test_a_right_answer_is_correct_and_true(capsys):
    assert rank.check(2)
    assert capsys.readouterr().out == "Correct (q1 rank)!\n"


def test_a_checker_message_follows_correct(capsys):
    q = Question("q", lambda a: "well done", [], "")
    assert q.check(1)
    assert capsys.readouterr().out == "Correct (q): well done\n"


def test_a_wrong_number_names_the_variable_and_the_direction_but_not_the_answer(capsys):
    count = Question("q2 count", lambda n: expect_equal("pixels", n, 784), ["h1", "h2"], "pixels = 784")
    assert not count.check(785)
    assert (
        capsys.readouterr().out
        == "Incorrect (q2 count): `pixels` is too high (you gave 785); `.hint()` gives a nudge\n"
    )
    assert not count.check(700)
    assert "`pixels` is too low (you gave 700)" in capsys.readouterr().out


def test_a_small_whole_answer_gets_no_direction_so_it_cannot_be_bisected(capsys):
    for wrong in (0, 1, 3, 4, 17):
        assert not rank.check(wrong)
        line = capsys.readouterr().out
        assert f"`rank_of_M` is not right (you gave {wrong})" in line
        assert "too high" not in line and "too low" not in line


@pytest.mark.parametrize(
    "check", [lambda: rank.check(float("nan")), lambda: rank.check(torch.tensor(float("nan")))]
)
def test_nan_is_named_as_not_finite_never_too_low(check, capsys):
    assert not check()
    line = capsys.readouterr().out
    assert "not a finite number" in line and "too low" not in line


@pytest.mark.parametrize("answer", [____, [1, ____], {"a": ____}, (____,)])
def test_a_placeholder_is_not_attempted(answer, capsys):
    assert not rank.check(answer)
    assert capsys.readouterr().out.startswith("Not attempted yet (q1 rank): replace ____ with your answer")


def test_a_function_still_raising_not_implemented_is_not_attempted(capsys):
    def square_student(x):
        raise NotImplementedError("your code here")

    assert not square.check(square_student)
    assert (
        "Not attempted yet (q9 square): `square` still raises NotImplementedError" in capsys.readouterr().out
    )


def test_an_exception_in_student_code_becomes_a_readable_message(capsys):
    assert not square.check(lambda x: x / 0)
    assert (
        capsys.readouterr().out
        == "Incorrect (q9 square): `square(3)` raised ZeroDivisionError: division by zero\n"
    )


def test_a_non_function_answer_is_named(capsys):
    assert not square.check(9)
    assert "`square` should be a function, got int" in capsys.readouterr().out


def test_call_student_describes_tensor_arguments_by_shape():
    with pytest.raises(Incorrect, match=r"`f\(tensor of shape \(2, 3\)\)` raised ValueError: nope"):
        call_student(lambda m: (_ for _ in ()).throw(ValueError("nope")), torch.zeros(2, 3), name="f")
    with pytest.raises(NotAttempted):
        call_student(lambda: (_ for _ in ()).throw(NotImplementedError()), name="g")


def test_expect_close_checks_shape_then_values():
    expect_close("x", torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7])
    with pytest.raises(Incorrect, match=r"`x` should have shape \(2,\), but it has \(3,\)"):
        expect_close("x", torch.zeros(3), [1.0, 2.0])
    with pytest.raises(Incorrect, match=r"`x` has the right shape but wrong values \(largest error 1\)"):
        expect_close("x", torch.tensor([1.0, 3.0]), [1.0, 2.0])
    with pytest.raises(Incorrect, match=r"`x` is too low \(you gave 0.25\)"):
        expect_close("x", 0.25, 0.5)
    with pytest.raises(Incorrect, match="`x` should be a number, got 'half'"):
        expect_close("x", "half", 0.5)
    with pytest.raises(Incorrect, match="`x` should be a tensor, got 'half'"):
        expect_close("x", "half", [0.5, 1.0])


def test_expect_equal_reads_one_element_tensors():
    expect_equal("n", torch.tensor(4), 4)
    with pytest.raises(Incorrect, match=r"`n` for a 2x2 matrix is too high \(you gave 50\)"):
        expect_equal("n", 50, 40, context="for a 2x2 matrix")


def test_hints_are_graded_and_out_of_range_is_refused(capsys):
    square.hint()
    square.hint(2)
    assert (
        capsys.readouterr().out
        == "Hint 1 of 2 (q9 square): Multiply x by itself.\nHint 2 of 2 (q9 square): return x * x\n"
    )
    with pytest.raises(ValueError, match="q9 square has hints 1 to 2, got 3"):
        square.hint(3)


def test_solution_prints_the_reference_code(capsys):
    square.solution()
    assert capsys.readouterr().out == "Solution (q9 square):\ndef square(x):\n    return x * x\n"


def test_check_result_is_truthy_compares_to_bools_and_shows_nothing_in_ipython():
    assert CheckResult(True) and not CheckResult(False)
    assert CheckResult(True) == True  # noqa: E712 - the comparison is the point
    assert CheckResult(False) == False  # noqa: E712
    assert repr(CheckResult(True)) == "True"
    assert CheckResult(True)._ipython_display_() is None


def test_a_number_just_off_the_answer_is_shown_in_full_not_rounded_to_it(capsys):
    assert not rank.check(2.000001)
    assert "you gave 2.000001" in capsys.readouterr().out
