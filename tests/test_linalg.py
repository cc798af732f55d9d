"""Tests for lora_teach.linalg: properties over random shapes and ranks, plus plain examples."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_teach.linalg import (
    amplification_factor,
    approximation_error,
    effective_rank,
    low_rank_approximation,
    subspace_similarity,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def matrix_and_rank(draw):
    """A random float64 matrix (m, n) and a rank 0 <= r <= min(m, n)."""
    m, n = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    M = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return M, draw(st.integers(0, min(m, n)))


def random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# low_rank_approximation and approximation_error


@SETTINGS
@given(matrix_and_rank())
def test_low_rank_approximation_has_the_shape_of_M_and_rank_at_most_r(case):
    M, r = case
    approx = low_rank_approximation(M, r)
    assert approx.shape == M.shape
    assert torch.linalg.matrix_rank(approx).item() <= r


@SETTINGS
@given(matrix_and_rank())
def test_approximation_error_equals_root_sum_of_discarded_squared_singular_values(case):
    M, r = case
    S = torch.linalg.svdvals(M)
    expected = math.sqrt((S[r:] ** 2).sum().item())
    assert approximation_error(M, r) == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(matrix_and_rank())
def test_approximation_error_never_grows_with_rank_and_is_zero_at_full_rank(case):
    M, _ = case
    errors = [approximation_error(M, r) for r in range(min(M.shape) + 1)]
    assert all(a >= b - 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[-1] == pytest.approx(0.0, abs=1e-9)
    assert errors[0] == pytest.approx(torch.linalg.matrix_norm(M).item())


@SETTINGS
@given(matrix_and_rank(), st.integers(0, 2**31 - 1))
def test_no_other_rank_r_product_beats_the_svd_truncation(case, seed):
    M, r = case
    m, n = M.shape
    B, A = random(m, r, seed=seed), random(r, n, seed=seed + 1)
    other_error = torch.linalg.matrix_norm(M - B @ A).item()
    assert approximation_error(M, r) <= other_error + 1e-9


def test_rank_one_matrix_is_recovered_exactly_at_rank_one():
    u, v = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[4.0, 5.0]])
    M = u @ v
    torch.testing.assert_close(low_rank_approximation(M, 1), M)
    assert approximation_error(M, 1) == pytest.approx(0.0, abs=1e-5)


def test_diagonal_example_keeps_the_largest_entries():
    M = torch.diag(torch.tensor([3.0, 5.0, 1.0]))
    torch.testing.assert_close(low_rank_approximation(M, 1), torch.diag(torch.tensor([0.0, 5.0, 0.0])))
    assert approximation_error(M, 1) == pytest.approx(math.sqrt(10))


@pytest.mark.parametrize("r", [-1, 4, 2.0, True])
def test_low_rank_approximation_rejects_r_out_of_range(r):
    with pytest.raises(ValueError, match=r"r must be an integer between 0 and min\(m, n\) = 3"):
        low_rank_approximation(torch.ones(3, 5), r)


def test_low_rank_approximation_rejects_an_integer_matrix():
    with pytest.raises(ValueError, match=r"M must be a floating-point tensor, got torch.int64"):
        low_rank_approximation(torch.ones(3, 3, dtype=torch.int64), 1)


def test_low_rank_approximation_rejects_a_vector():
    with pytest.raises(ValueError, match="M must be a 2-D tensor"):
        low_rank_approximation(torch.ones(5), 1)


# effective_rank


@SETTINGS
@given(st.integers(1, 8), st.integers(0, 8), st.integers(0, 8), st.floats(0.1, 10.0), st.integers(0, 1000))
def test_effective_rank_of_k_equal_singular_values_is_k(k, extra_rows, extra_cols, value, seed):
    m, n = k + extra_rows, k + extra_cols
    Q1, _ = torch.linalg.qr(random(m, m, seed=seed))
    Q2, _ = torch.linalg.qr(random(n, n, seed=seed + 1))
    M = value * Q1[:, :k] @ Q2[:, :k].T
    assert effective_rank(M) == pytest.approx(k, rel=1e-9)


@SETTINGS
@given(matrix_and_rank())
def test_effective_rank_lies_between_one_and_the_rank(case):
    M, _ = case
    rank = torch.linalg.matrix_rank(M).item()
    assert 1 - 1e-9 <= effective_rank(M) <= rank + 1e-9


def test_effective_rank_of_unequal_singular_values_example():
    M = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    assert effective_rank(M) == pytest.approx(math.exp(-(p * p.log()).sum().item()))


def test_effective_rank_rejects_the_zero_matrix():
    with pytest.raises(ValueError, match="M is all zeros"):
        effective_rank(torch.zeros(3, 3))


# subspace_similarity


@SETTINGS
@given(st.integers(1, 6), st.integers(0, 4), st.integers(10, 14), st.integers(0, 1000))
def test_subspace_similarity_is_one_when_the_subspaces_nest(r1, extra, in_features, seed):
    A1 = random(r1, in_features, seed=seed)
    A2 = torch.cat([random(extra, in_features, seed=seed + 1), A1])  # row space of A2 contains A1's
    for i in range(1, r1 + 1):
        assert subspace_similarity(A1, A2, i, r1 + extra) == pytest.approx(1.0)
        assert subspace_similarity(A1, A1, i, i) == pytest.approx(1.0)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 10), st.integers(0, 1000), st.data())
def test_subspace_similarity_lies_in_zero_one_and_is_symmetric(r1, r2, in_features, seed, data):
    A1, A2 = random(r1, in_features, seed=seed), random(r2, in_features, seed=seed + 1)
    i = data.draw(st.integers(1, min(r1, in_features)))
    j = data.draw(st.integers(1, min(r2, in_features)))
    phi = subspace_similarity(A1, A2, i, j)
    assert -1e-9 <= phi <= 1 + 1e-9
    assert phi == pytest.approx(subspace_similarity(A2, A1, j, i))


def test_subspace_similarity_is_zero_for_orthogonal_subspaces():
    eye = torch.eye(4)
    assert subspace_similarity(eye[:2], eye[2:], 2, 2) == pytest.approx(0.0, abs=1e-7)


def test_subspace_similarity_half_overlap_example():
    eye = torch.eye(4)
    assert subspace_similarity(eye[:2], eye[1:3], 2, 2) == pytest.approx(0.5)


def test_subspace_similarity_rejects_mismatched_in_features():
    with pytest.raises(ValueError, match="same number of columns"):
        subspace_similarity(torch.ones(2, 5), torch.ones(2, 6), 1, 1)


def test_subspace_similarity_rejects_i_beyond_the_rank():
    with pytest.raises(ValueError, match="i must be an integer between 1 and"):
        subspace_similarity(torch.randn(2, 5), torch.randn(3, 5), 3, 1)


# amplification_factor


@SETTINGS
@given(st.integers(2, 10), st.integers(2, 10), st.integers(0, 1000), st.floats(0.1, 10.0), st.data())
def test_amplification_factor_scales_with_delta_W_and_inversely_with_W(out_f, in_f, seed, c, data):
    r = data.draw(st.integers(1, min(out_f, in_f)))
    delta_W, W = random(out_f, in_f, seed=seed), random(out_f, in_f, seed=seed + 1)
    base = amplification_factor(delta_W, W, r)
    assert amplification_factor(c * delta_W, W, r) == pytest.approx(c * base)
    assert amplification_factor(delta_W, c * W, r) == pytest.approx(base / c)


def test_amplification_factor_of_a_rank_r_matrix_against_itself_is_one():
    delta_W = random(8, 3, seed=0) @ random(3, 6, seed=1)
    assert amplification_factor(delta_W, delta_W, 3) == pytest.approx(1.0)


def test_amplification_factor_diagonal_example():
    delta_W = torch.diag(torch.tensor([2.0, 0.0, 0.0]))
    W = torch.diag(torch.tensor([0.0, 4.0, 0.5]))
    W[0, 0] = 0.1  # W barely uses the direction delta_W changes
    assert amplification_factor(delta_W, W, 1) == pytest.approx(2.0 / 0.1)


def test_amplification_factor_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        amplification_factor(torch.ones(3, 4), torch.ones(4, 3), 1)


def test_amplification_factor_rejects_r_zero():
    with pytest.raises(ValueError, match=r"r must be an integer between 1 and min\(out, in\) = 3"):
        amplification_factor(torch.ones(3, 4), torch.ones(3, 4), 0)
