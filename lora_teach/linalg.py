"""Linear algebra behind LoRA: best low-rank approximations, effective rank,
and the LoRA paper's subspace similarity and amplification factor (Section 7).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_matrix(M: Tensor, name: str) -> None:
    if not isinstance(M, Tensor) or M.dim() != 2:
        shape = tuple(M.shape) if isinstance(M, Tensor) else type(M).__name__
        raise ValueError(f"{name} must be a 2-D tensor (a matrix), got {shape}; reshape it first")
    if not M.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor, got {M.dtype}; call .double() or .float() first"
        )


def _check_count(value: int, name: str, low: int, high: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer between {low} and {what} = {high}, got {value!r}")


def low_rank_approximation(M: Tensor, r: int) -> Tensor:
    """The best rank-r approximation of M (Eckart-Young), from its SVD.

    M: (m, n) -> (m, n). Keeps the r largest singular values; r = 0 gives zeros.
    """
    _check_matrix(M, "M")
    _check_count(r, "r", 0, min(M.shape), "min(m, n)")
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]


def approximation_error(M: Tensor, r: int) -> float:
    """Frobenius norm of M minus its best rank-r approximation. M: (m, n).

    Equals sqrt(sum of the squared singular values that were dropped).
    """
    return torch.linalg.matrix_norm(M - low_rank_approximation(M, r)).item()


def effective_rank(M: Tensor) -> float:
    """exp of the Shannon entropy of the singular values divided by their sum (Roy & Vetterli 2007).

    M: (m, n), not all zero. A matrix with k equal non-zero singular values gives k.
    """
    _check_matrix(M, "M")
    S = torch.linalg.svdvals(M)
    total = S.sum()
    if total <= 0:
        raise ValueError("M is all zeros, so its effective rank is undefined; pass a non-zero matrix")
    p = S / total
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def _top_right_singular_vectors(A: Tensor, k: int, name: str, index: str) -> Tensor:
    """A: (r, in) -> (in, k), the top-k right-singular vectors as columns."""
    _check_matrix(A, name)
    _check_count(k, index, 1, min(A.shape), f"min of {name}'s shape")
    return torch.linalg.svd(A, full_matrices=False).Vh[:k].T


def subspace_similarity(A1: Tensor, A2: Tensor, i: int, j: int) -> float:
    """The LoRA paper's phi(A1, A2, i, j) = ||U1_i^T U2_j||_F^2 / min(i, j), in [0, 1].

    A1: (r1, in), A2: (r2, in), both lora_A matrices with the same in. U1_i: (in, i)
    holds the top-i right-singular vectors of A1, U2_j: (in, j) the top-j of A2.
    It is 1 when one subspace contains the other and 0 when they are orthogonal.
    """
    _check_matrix(A1, "A1")
    _check_matrix(A2, "A2")
    if A1.shape[1] != A2.shape[1]:
        raise ValueError(
            f"A1 and A2 must have the same number of columns (in_features), got {tuple(A1.shape)} "
            f"and {tuple(A2.shape)}; pass two lora_A matrices of the same layer"
        )
    U1 = _top_right_singular_vectors(A1, i, "A1", "i")
    U2 = _top_right_singular_vectors(A2, j, "A2", "j")
    return (torch.linalg.matrix_norm(U1.T @ U2) ** 2 / min(i, j)).item()


def amplification_factor(delta_W: Tensor, W: Tensor, r: int) -> float:
    """The LoRA paper's Section 7.3 measure ||delta_W||_F / ||U^T W V^T||_F.

    delta_W, W: (out, in). U: (out, r) and V^T: (in, r) hold the top-r left and
    right singular vectors of delta_W, so U^T W V^T is (r, r): the part of W
    along the directions delta_W uses. The factor says how many times larger
    delta_W is along those directions than W already was. Read the denominator
    against two references (the paper's Table 7): W's own top-r directions (the
    most W can hold) and random directions (what chance gives). The paper finds
    it far below the first and above the second: delta_W amplifies directions
    that W contains but does not emphasise, not W's top directions.
    """
    _check_matrix(delta_W, "delta_W")
    _check_matrix(W, "W")
    if delta_W.shape != W.shape:
        raise ValueError(
            f"delta_W and W must have the same shape, got {tuple(delta_W.shape)} and {tuple(W.shape)}"
        )
    _check_count(r, "r", 1, min(W.shape), "min(out, in)")
    U, _, Vh = torch.linalg.svd(delta_W, full_matrices=False)
    projected = U[:, :r].T @ W @ Vh[:r].T
    return (torch.linalg.matrix_norm(delta_W) / torch.linalg.matrix_norm(projected)).item()
