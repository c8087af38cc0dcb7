import torch

from relatlas.aggregation.screening import outlier_scores, screen


def _honest(count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Noisy views of one relative space, as clients' encoders give."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.rand(50, 16, generator=generator) * 2 - 1
    return [{"cosine": (truth + 0.05 * torch.randn(50, 16, generator=generator)).clamp(-1, 1)} for _ in range(count)]


def test_a_made_up_space_is_dropped_with_its_score_and_honest_ones_kept():
    spaces = _honest(3)
    spaces.insert(1, {"cosine": torch.rand(50, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1})
    scores, dropped = screen(spaces, threshold=3.0)
    assert list(dropped) == [1] and max(scores[:1] + scores[2:]) < 2.0
    assert dropped[1].startswith("outlier: its space is ") and "threshold 3" in dropped[1]


def test_honest_clients_score_near_one_and_a_scaled_distance_space_far_above():
    spaces = [space | {"euclidean": space["cosine"].abs() + 1} for space in _honest(4, seed=1)]
    assert max(outlier_scores(spaces)) < 2.0
    spaces[2] = spaces[2] | {"euclidean": spaces[2]["euclidean"] * 1000}  # the largest score over similarities counts
    scores = outlier_scores(spaces)
    assert scores[2] > 100 and max(scores[:2] + scores[3:]) < 2.0


def test_two_clients_or_threshold_zero_screen_nobody():
    liar = {"cosine": -_honest(1)[0]["cosine"]}
    assert screen([*_honest(1), liar], threshold=3.0) == ([0.0, 0.0], {})
    scores, dropped = screen([*_honest(2), liar], threshold=0.0)
    assert dropped == {} and scores[2] > 3.0
