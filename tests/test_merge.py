import pytest
import torch

from relatlas.aggregation.aggregators import PRODUCT_SIMILARITIES, aggregate, product_of_invariances, required_similarities
from relatlas.aggregation.merge import (
    concat_merge,
    mean_merge,
    median_merge,
    product_merge,
    standardize_rows,
    sum_merge,
    trimmed_mean_merge,
)

A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
B = torch.tensor([[3.0, 6.0], [5.0, 0.0]])


def test_mean_is_elementwise():
    torch.testing.assert_close(mean_merge([A, B]), torch.tensor([[2.0, 4.0], [4.0, 2.0]]))


def test_weighted_mean_follows_weights():
    torch.testing.assert_close(mean_merge([A, B], weights=[3, 1]), (3 * A + B) / 4)


def test_masked_mean_ignores_unprojected_samples():
    masks = torch.tensor([[True, False], [True, True]])
    merged = mean_merge([A, B], masks=masks)
    torch.testing.assert_close(merged[0], (A[0] + B[0]) / 2)
    torch.testing.assert_close(merged[1], B[1])


def test_mean_refuses_samples_nobody_projected_and_bad_weights():
    with pytest.raises(ValueError, match="projected by no client"):
        mean_merge([A, B], masks=torch.tensor([[True, False], [True, False]]))
    with pytest.raises(ValueError, match="non-negative"):
        mean_merge([A, B], weights=[1, -1])
    with pytest.raises(ValueError, match="differ in shape"):
        mean_merge([A, B[:1]])
    with pytest.raises(ValueError, match="nothing to merge"):
        mean_merge([])


def test_standardize_rows_gives_zero_mean_unit_variance():
    rows = standardize_rows(torch.randn(10, 7) * 5 + 3)
    torch.testing.assert_close(rows.mean(dim=1), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(rows.std(dim=1, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)


def test_product_normalises_each_subspace_then_combines():
    small, large = torch.randn(4, 3), 1000 * torch.randn(4, 3)
    joined = product_merge([small, large])
    assert joined.shape == (4, 6)
    torch.testing.assert_close(joined[:, 3:], standardize_rows(large))
    torch.testing.assert_close(
        product_merge([small, large], combine=sum_merge), standardize_rows(small) + standardize_rows(large)
    )


def _client_spaces(count: int, n: int = 6, m: int = 5) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            name: torch.rand(n, m, generator=gen) * (2 if name == "cosine" else 30) - (1 if name == "cosine" else 0)
            for name in PRODUCT_SIMILARITIES
        }
        for _ in range(count)
    ]


def _rescaled(space: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    return {name: values if name == "cosine" else factor * values for name, values in space.items()}


@pytest.mark.parametrize("aggregation", ["product", "product-sum"])
def test_product_is_invariant_to_rescaling_one_clients_distances(aggregation):
    spaces = _client_spaces(3)
    rescaled = [_rescaled(spaces[0], 10.0), _rescaled(spaces[1], 0.1), spaces[2]]
    torch.testing.assert_close(aggregate(aggregation, rescaled), aggregate(aggregation, spaces), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        aggregate(aggregation, rescaled, weights=[1, 2, 3]), aggregate(aggregation, spaces, weights=[1, 2, 3]), atol=1e-4, rtol=0
    )


def test_a_client_with_10x_wider_distances_does_not_dominate_the_product():
    wide, narrow = _client_spaces(2)
    wide = _rescaled(wide, 10.0)
    merged = aggregate("product", [wide, narrow])[:, 5:10]  # the Euclidean block
    to_wide, to_narrow = ((merged * standardize_rows(s["euclidean"])).sum(dim=1) for s in (wide, narrow))
    torch.testing.assert_close(to_wide, to_narrow, atol=1e-4, rtol=0)  # equally close to both clients
    raw = standardize_rows(mean_merge([wide["euclidean"], narrow["euclidean"]]))  # what averaging raw distances gave
    assert (
        (raw * standardize_rows(wide["euclidean"])).sum(dim=1) > (raw * standardize_rows(narrow["euclidean"])).sum(dim=1)
    ).all()


@pytest.mark.parametrize(("aggregation", "combine"), [("product", concat_merge), ("product-sum", sum_merge)])
def test_a_clients_own_product_space_is_normalised_as_the_merge_is(aggregation, combine):
    space = _client_spaces(1)[0]
    own = product_merge([space[name] for name in PRODUCT_SIMILARITIES], combine=combine)
    torch.testing.assert_close(aggregate(aggregation, [space]), own, atol=1e-5, rtol=0)


def test_a_product_with_a_combine_of_ones_own():
    spaces = _client_spaces(2)
    largest = product_of_invariances(lambda subspaces: torch.stack(list(subspaces)).amax(dim=0))
    assert largest.similarities == PRODUCT_SIMILARITIES
    torch.testing.assert_close(largest.merge(spaces, None, None), aggregate("product", spaces).view(6, 4, 5).amax(dim=1))


def test_concat_keeps_every_client():
    assert concat_merge([A, B]).shape == (2, 4)


def test_aggregate_by_name():
    spaces = [{name: torch.randn(5, 3) for name in required_similarities("product")} for _ in range(2)]
    assert aggregate("mean", spaces).shape == (5, 3)
    assert aggregate("product", spaces).shape == (5, 12)
    assert aggregate("product-sum", spaces).shape == (5, 3)
    assert aggregate("concat", spaces).shape == (5, 6)
    with pytest.raises(ValueError, match="missing"):
        aggregate("product", [{"cosine": torch.randn(5, 3)}])
    with pytest.raises(ValueError, match="unknown aggregation"):
        required_similarities("mode")


def test_median_and_trimmed_mean_ignore_one_extreme_client():
    honest = [torch.full((4, 3), 0.5), torch.full((4, 3), 0.7), torch.full((4, 3), 0.6)]
    liar = torch.full((4, 3), -1.0)
    assert torch.allclose(median_merge([*honest, liar]), torch.full((4, 3), 0.55))  # the two middle values' mean
    assert torch.allclose(trimmed_mean_merge([*honest, liar]), torch.full((4, 3), 0.55))
    assert torch.allclose(median_merge(honest), torch.full((4, 3), 0.6))
    assert mean_merge([*honest, liar]).max() < 0.3  # the mean follows the liar


def test_robust_merges_average_only_the_clients_that_projected_a_sample():
    spaces = [torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]), torch.tensor([[9.0], [0.0]])]
    masks = torch.tensor([[True, True], [True, True], [False, True]])
    assert median_merge(spaces, masks=masks).flatten().tolist() == [2.0, 2.0]
    assert trimmed_mean_merge(spaces, masks=masks).flatten().tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="projected by no client"):
        median_merge(spaces, masks=torch.zeros(3, 2, dtype=torch.bool))


def test_mean_of_huge_distances_weighted_by_counts_stays_finite():
    spaces = [torch.full((2, 2), 3e38), torch.full((2, 2), 3e38)]
    assert torch.isfinite(mean_merge(spaces, weights=[1000.0, 1000.0])).all()
