import pytest
import torch

from relatlas.aggregation.accumulators import MeanAccumulator, ProductAccumulator
from relatlas.aggregation.aggregators import PRODUCT_SIMILARITIES, aggregate, register_aggregation
from relatlas.aggregation.merge import concat_merge
from relatlas.aggregation.quantile_sketch import CAPACITY, trimmed_mean_sketch
from relatlas.aggregation.streaming import StreamingError, fold, honest_spaces, open_accumulator, sketch_error, streams
from relatlas.registries import AGGREGATIONS

EXACT = ("mean", "product", "product-sum")
SKETCHED = ("median", "trimmed-mean")


@pytest.fixture(autouse=True)
def scratch_aggregations(monkeypatch):
    """What a test registers does not outlive it."""
    monkeypatch.setattr(AGGREGATIONS, "_entries", dict(AGGREGATIONS._entries))


def client_spaces(clients: int, samples: int = 9, anchors: int = 5, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Clients whose subspaces differ in scale, as encoders that spread distances differently do."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {name: (k + 1) * torch.rand(samples, anchors, generator=generator) for name in PRODUCT_SIMILARITIES}
        for k in range(clients)
    ]


def some_masks(clients: int, samples: int, seed: int = 1) -> torch.Tensor:
    masks = torch.rand(clients, samples, generator=torch.Generator().manual_seed(seed)) < 0.6
    masks[0] = True  # every sample projected by someone
    return masks


@pytest.mark.parametrize("aggregation", EXACT)
def test_an_exact_merge_streamed_equals_the_batch_merge_with_weights_and_masks(aggregation):
    spaces, weights, masks = client_spaces(5), [3.0, 1.0, 0.5, 7.0, 2.0], some_masks(5, 9)
    expected = aggregate(aggregation, spaces, weights=weights, masks=masks)
    torch.testing.assert_close(fold(aggregation, iter(spaces), weights=weights, masks=masks), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fold(aggregation, spaces), aggregate(aggregation, spaces), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("aggregation", EXACT)
def test_folding_order_does_not_matter_beyond_float_tolerance(aggregation):
    spaces, weights, masks = client_spaces(6), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], some_masks(6, 9)
    order = [4, 1, 5, 0, 3, 2]
    shuffled = fold(aggregation, [spaces[i] for i in order], weights=[weights[i] for i in order], masks=masks[order])
    torch.testing.assert_close(shuffled, fold(aggregation, spaces, weights=weights, masks=masks), atol=1e-6, rtol=1e-5)


def test_the_streamed_mean_refuses_what_the_batch_mean_refuses():
    spaces = client_spaces(2)
    with pytest.raises(ValueError, match="projected by no client with positive weight"):
        fold("mean", spaces, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="non-negative"):
        fold("mean", spaces, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="differ in shape"):
        fold("mean", [spaces[0], {"cosine": spaces[1]["cosine"][:3]}])
    with pytest.raises(ValueError, match="nothing to merge"):
        fold("mean", [])
    with pytest.raises(ValueError, match="weights for 1 clients, and client 2 came"):
        fold("mean", spaces, weights=[1.0])
    with pytest.raises(ValueError, match="masks for 3 clients, and 2 came"):
        fold("mean", spaces, masks=torch.ones(3, 9, dtype=torch.bool))


def test_a_refused_client_leaves_the_running_product_as_it_was():
    spaces = client_spaces(3)
    accumulator = ProductAccumulator(PRODUCT_SIMILARITIES, concat_merge)
    accumulator.add(spaces[0])
    bad = dict(spaces[1]) | {"linf": spaces[1]["linf"][:4]}  # the last subspace is the wrong shape
    with pytest.raises(ValueError, match="differ in shape"):
        accumulator.add(bad)
    accumulator.add(spaces[2])
    torch.testing.assert_close(accumulator.result(), aggregate("product", [spaces[0], spaces[2]]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("aggregation", SKETCHED)
def test_a_robust_merge_of_up_to_capacity_clients_is_exact(aggregation):
    spaces, masks = client_spaces(CAPACITY), some_masks(CAPACITY, 9)
    hostile = 3 if aggregation == "trimmed-mean" else None
    expected = aggregate(aggregation, spaces, masks=masks, hostile=hostile)
    assert torch.equal(fold(aggregation, spaces, masks=masks, hostile=hostile), expected)


@pytest.mark.parametrize("aggregation", SKETCHED)
def test_a_robust_merge_past_capacity_is_within_the_stated_bound(aggregation):
    """docs/results/performance.md: on honest clients with noise 0.1, mean error below 0.01, largest below 0.05."""
    _, spaces = honest_spaces(64, 50, 16, 0.1, seed=0)
    error = sketch_error(aggregation, spaces)
    assert 0 < float(error.mean()) < 0.01 and float(error.max()) < 0.05  # approximate, and close
    masked = sketch_error(aggregation, spaces, masks=some_masks(64, 50))
    assert float(masked.mean()) < 0.02 and float(masked.max()) < 0.1


def test_the_trimmed_sketch_cuts_hostile_extremes_past_capacity():
    shared, spaces = honest_spaces(40, 30, 8, 0.05, seed=2)
    liars = [{"cosine": torch.ones_like(shared)} for _ in range(5)]
    clients = spaces[:10] + liars + spaces[10:]  # the liars among the first block, compacted with honest ones
    exact = aggregate("trimmed-mean", clients, hostile=5)
    merged = fold("trimmed-mean", clients, hostile=5)
    # a liar's value paired with an honest one and trimmed only in part would leak back in (0.032 here)
    assert float((merged - shared).abs().mean()) < float((exact - shared).abs().mean()) + 0.005
    assert float((merged - exact).abs().max()) < 0.05


@pytest.mark.parametrize("aggregation", SKETCHED)
def test_the_sketched_merge_depends_on_order_only_within_its_bound(aggregation):
    _, spaces = honest_spaces(48, 30, 8, 0.1, seed=3)
    forward, backward = fold(aggregation, spaces), fold(aggregation, spaces[::-1])
    assert float((forward - backward).abs().max()) < 0.05


@pytest.mark.parametrize("aggregation", ["krum", "multi-krum", "concat", "product-learned", "product-weighted"])
def test_a_merge_that_needs_every_client_at_once_says_so(aggregation):
    assert not streams(aggregation)
    with pytest.raises(
        StreamingError, match=rf"aggregation '{aggregation}' needs every client's space at once.*these can: mean,"
    ):
        open_accumulator(aggregation)


def test_a_user_aggregation_streams_with_its_own_accumulator():
    class RunningMax:
        def __init__(self) -> None:
            self.best: torch.Tensor | None = None

        def add(self, space, weight=1.0, mask=None) -> None:
            self.best = space["cosine"] if self.best is None else torch.maximum(self.best, space["cosine"])

        def result(self) -> torch.Tensor:
            return self.best

    @register_aggregation("max-cosine", accumulator=RunningMax)
    def max_cosine(spaces, weights, masks):
        return torch.stack([space["cosine"] for space in spaces]).amax(dim=0)

    spaces = client_spaces(4)
    assert streams("max-cosine")
    assert torch.equal(fold("max-cosine", spaces), aggregate("max-cosine", spaces))


def test_a_streamed_merge_is_checked_as_the_batch_one_is():
    with pytest.raises(ValueError, match="trim must be in"):
        trimmed_mean_sketch(trim=0.6)
    with pytest.raises(ValueError, match="trimmed-mean withstands 1 of 3"):
        fold("trimmed-mean", client_spaces(3), hostile=2)
    assert isinstance(open_accumulator("mean"), MeanAccumulator)
