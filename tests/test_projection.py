import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relatlas.aggregation.projection import relative_projection, relative_subspaces
from relatlas.registries import SIMILARITIES
from tests.conftest import random_orthogonal

shapes = st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(2, 24))  # N, m, d
seeds = st.integers(0, 2**31 - 1)


def _data(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(m, d, generator=gen, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=seeds, scale=st.floats(0.01, 100.0))
def test_cosine_invariant_to_orthogonal_map_and_rescaling(shape, seed, scale):
    x, anchors = _data(*shape, seed)
    q = random_orthogonal(shape[2], seed) * scale
    before = relative_projection(x, anchors, "cosine")
    after = relative_projection(x @ q, anchors @ q, "cosine")
    torch.testing.assert_close(after, before, atol=1e-9, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=seeds)
def test_euclidean_invariant_to_orthogonal_map(shape, seed):
    x, anchors = _data(*shape, seed)
    q = random_orthogonal(shape[2], seed)
    torch.testing.assert_close(relative_projection(x @ q, anchors @ q, "euclidean"), relative_projection(x, anchors, "euclidean"))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=seeds, similarity=st.sampled_from(["l1", "linf"]))
def test_l1_linf_invariant_to_signed_permutations(shape, seed, similarity):
    x, anchors = _data(*shape, seed)
    gen = torch.Generator().manual_seed(seed)
    signed_perm = torch.eye(shape[2], dtype=torch.float64)[torch.randperm(shape[2], generator=gen)]
    signed_perm *= torch.randint(0, 2, (shape[2],), generator=gen) * 2 - 1
    torch.testing.assert_close(
        relative_projection(x @ signed_perm, anchors @ signed_perm, similarity), relative_projection(x, anchors, similarity)
    )


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=seeds, similarity=st.sampled_from(SIMILARITIES.names()))
def test_centering_gives_translation_invariance(shape, seed, similarity):
    x, anchors = _data(*shape, seed)
    shift = torch.randn(shape[2], dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1)) * 5
    torch.testing.assert_close(
        relative_projection(x + shift, anchors + shift, similarity, center=True),
        relative_projection(x, anchors, similarity, center=True),
    )


def test_cosine_is_not_translation_invariant_without_centering():
    x, anchors = _data(20, 5, 8, 0)
    assert not torch.allclose(relative_projection(x + 3, anchors + 3), relative_projection(x, anchors))


def test_rescaling_changes_distances_but_not_cosine():
    x, anchors = _data(20, 5, 8, 0)
    torch.testing.assert_close(
        relative_projection(2 * x, 2 * anchors, "euclidean"), 2 * relative_projection(x, anchors, "euclidean")
    )


@pytest.mark.parametrize("similarity", SIMILARITIES.names())
def test_blocked_equals_one_shot(similarity):
    x, anchors = _data(103, 7, 5, 1)
    whole = relative_projection(x, anchors, similarity)
    blocked = relative_projection(x, anchors, similarity, block_elements=7 * 10)
    torch.testing.assert_close(blocked, whole)


@pytest.mark.parametrize(("output_only", "calls"), [(False, 11), (True, 1)])
def test_a_similarity_that_allocates_only_its_output_takes_all_rows_at_once(output_only, calls, monkeypatch):
    from relatlas.aggregation.similarities import Similarity

    monkeypatch.setattr(SIMILARITIES, "_entries", dict(SIMILARITIES._entries))  # the registration ends with the test
    seen = []
    counted = Similarity(lambda a: a, lambda rows, a: seen.append(len(rows)) or rows @ a.T, (-1e9, 1e9), output_only)
    SIMILARITIES.register("counted", counted, replace=True)
    x, anchors = _data(103, 7, 5, 1)
    torch.testing.assert_close(relative_projection(x, anchors, "counted", block_elements=7 * 10), x @ anchors.T)
    assert len(seen) == calls and sum(seen) == 103  # blocks of 10 rows, or one call
    assert SIMILARITIES.get("l1").output_only and SIMILARITIES.get("linf").output_only
    assert not SIMILARITIES.get("cosine").output_only and not SIMILARITIES.get("euclidean").output_only


def test_matches_direct_formulas():
    x, anchors = _data(9, 4, 6, 2)
    cos = torch.nn.functional.cosine_similarity(x[:, None], anchors[None], dim=-1)
    diff = x[:, None] - anchors[None]
    torch.testing.assert_close(relative_projection(x, anchors, "cosine"), cos)
    torch.testing.assert_close(relative_projection(x, anchors, "euclidean"), diff.norm(dim=-1))
    torch.testing.assert_close(relative_projection(x, anchors, "l1"), diff.abs().sum(-1))
    torch.testing.assert_close(relative_projection(x, anchors, "linf"), diff.abs().amax(-1))


def test_gradients_flow_through_projection():
    x, anchors = _data(6, 3, 4, 3)
    x.requires_grad_(True)
    relative_projection(x, anchors, "cosine", block_elements=6).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_subspaces_are_keyed_by_similarity():
    x, anchors = _data(5, 3, 4, 4)
    assert set(relative_subspaces(x, anchors, SIMILARITIES.names())) == set(SIMILARITIES)


def test_rejects_bad_input():
    x, anchors = _data(5, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown similarity"):
        relative_projection(x, anchors, "dot")
    with pytest.raises(ValueError, match=r"expected x \[N, d\]"):
        relative_projection(x, anchors[:, :2])
