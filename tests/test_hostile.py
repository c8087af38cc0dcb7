"""Merges sized by the hostile clients the operator declares (``--max-hostile``):
trimmed-mean, Krum and Multi-Krum on small tensors, the refusals where a merge
cannot hold, and the attacks and scoring of ``relatlas bench attacks``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relatlas.aggregation.aggregators import aggregate, check_withstands, hostile_count, register_aggregation
from relatlas.aggregation.selection import krum_scores, krum_select
from relatlas.benchmarks.attacks import ATTACKS, ROW_ATTACKS, attacked, flip_labels, hostile_positions
from relatlas.benchmarks.attacks_suite import attack_table, score_merges
from relatlas.registries import AGGREGATIONS
from relatlas.server.cli import main
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.evaluation import ProbeSplit


def _federation(honest: int, colluders: int, seed: int = 0) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Honest clients close to one space, and colluders all sending the same made-up rows."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.rand(12, 6, generator=generator) * 2 - 1
    spaces = [(truth + 0.05 * torch.randn(12, 6, generator=generator)).clamp(-1, 1) for _ in range(honest)]
    made_up = torch.rand(12, 6, generator=generator) * 2 - 1
    return truth, [{"cosine": space} for space in spaces + [made_up] * colluders]


def _error(merged: torch.Tensor, truth: torch.Tensor) -> float:
    return float((merged - truth).abs().mean())


def test_trimmed_mean_sized_by_two_hostile_of_five_resists_two_colluders():
    truth, spaces = _federation(3, 2)
    assert _error(aggregate("trimmed-mean", spaces), truth) > 0.1  # 20 % trims one value each end: the second colluder stays
    assert _error(aggregate("trimmed-mean", spaces, hostile=2), truth) < 0.05


def test_krum_does_not_select_colluders_with_identical_rows():
    truth, spaces = _federation(5, 2)
    cosine = [space["cosine"] for space in spaces]
    scores = krum_scores(cosine, 2)
    assert scores[5] == scores[6] and scores[5] > scores[:5].max()  # each colluder still pays for F honest neighbours
    assert krum_select(cosine, 2, 1)[0] < 5
    assert krum_select(cosine, 2, 5) == [0, 1, 2, 3, 4]
    assert _error(aggregate("krum", spaces, hostile=2), truth) < 0.1
    assert _error(aggregate("multi-krum", spaces, hostile=2), truth) < 0.05
    assert _error(aggregate("mean", spaces), truth) > 0.1


def test_krum_keeps_every_client_below_three_and_scores_one_clients_own_space():
    _, spaces = _federation(2, 0)
    assert torch.equal(aggregate("krum", spaces[:1]), spaces[0]["cosine"])
    assert torch.allclose(aggregate("multi-krum", spaces), (spaces[0]["cosine"] + spaces[1]["cosine"]) / 2)


def test_a_masked_selection_falls_back_on_every_selected_client_for_a_sample_none_of_them_projected():
    truth, spaces = _federation(5, 2)
    masks = torch.ones(7, 12, dtype=torch.bool)
    masks[:5, 0] = False  # only the colluders projected sample 0; Multi-Krum drops them
    merged = aggregate("multi-krum", spaces, hostile=2, masks=masks)
    assert torch.allclose(merged[0], torch.stack([s["cosine"][0] for s in spaces[:5]]).mean(dim=0))


@pytest.mark.parametrize(
    ("declared", "clients", "count"), [(2, 5, 2), (0.4, 5, 2), (0.2, 5, 1), (0.3, 5, 2), (0.1, 30, 3), (0, 5, 0)]
)
def test_max_hostile_is_a_count_or_a_fraction_rounded_up(declared, clients, count):
    assert hostile_count(declared, clients) == count


@pytest.mark.parametrize(
    ("aggregation", "clients", "declared", "message"),
    [
        ("trimmed-mean", 5, 3, "max-hostile 3 is 3 of 5 clients; trimmed-mean withstands 2 of 5 and needs 7 clients for 3"),
        ("median", 4, 0.5, "max-hostile 0.5 is 2 of 4 clients; median withstands 1 of 4 and needs 5 clients for 2"),
        ("krum", 5, 2, "krum withstands 1 of 5 and needs 7 clients for 2"),
        ("mean", 5, 1, "aggregation mean withstands no hostile client .* use median, trimmed-mean, krum, multi-krum"),
        ("median", 5, 1.5, "max-hostile 1.5 is neither a fraction below 1 nor a whole count"),
    ],
)
def test_a_merge_that_cannot_hold_is_refused_at_config_time_in_one_line(aggregation, clients, declared, message):
    with pytest.raises(ConfigError, match=message) as err:
        RunConfig.from_mapping({"aggregation": aggregation, "num-clients": clients, "max-hostile": declared})
    assert "\n" not in str(err.value)


def test_the_replies_received_are_checked_too():
    check_withstands("trimmed-mean", 5, 2, "max-hostile 2")  # holds at the configured size
    with pytest.raises(ValueError, match="trimmed-mean withstands 1 of 4"):
        check_withstands("trimmed-mean", 4, 2, "max-hostile 2")  # a round where one of five did not answer
    _, spaces = _federation(3, 1)
    with pytest.raises(ValueError, match="2 hostile is 2 of 4 clients"):
        aggregate("trimmed-mean", spaces, hostile=2)


@pytest.mark.parametrize("attack", sorted(ROW_ATTACKS))
def test_row_attacks_replace_only_the_hostile_rows_within_the_cosine_range(attack):
    _, spaces = _federation(3, 2)
    stacked = torch.stack([space["cosine"] for space in spaces])
    sent = attacked(stacked, [3, 4], attack, seed=0)
    assert torch.equal(sent[:3], stacked[:3]) and not torch.equal(sent[3:], stacked[3:])
    assert sent.abs().max() <= 1 and torch.equal(sent, attacked(stacked, [3, 4], attack, seed=0))


def test_label_flipping_and_hostile_positions():
    assert flip_labels(torch.arange(10).numpy(), 10).tolist() == list(range(9, -1, -1))
    assert hostile_positions(5, 0.2) == [4] and hostile_positions(5, 0.4) == [3, 4]
    assert "label-flip" in ATTACKS
    with pytest.raises(ValueError, match="leaves no honest client"):
        hostile_positions(3, 0.9)


def test_the_bench_scores_every_merge_twice_and_marks_refusals():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    truth = torch.where(labels[:, None] == 1, 0.5, -0.5) + 0.1 * torch.randn(40, 6, generator=generator)
    spaces = torch.stack([truth + 0.05 * torch.randn(40, 6, generator=generator) for _ in range(5)]).clamp(-1, 1)
    probes = ProbeSplit(np.arange(30), np.arange(30, 40), labels.numpy(), 2, epochs=5, seed=0)
    reference: dict = {}
    clean = score_merges(spaces, probes, 2, reference)
    assert clean["krum (F)"] is None and clean["multi-krum (F)"] is None  # n = 5 < 2F + 3
    assert clean["median"][0] == clean["median"][1] == 1.0 and set(reference) == {n for n, s in clean.items() if s}
    poisoned = score_merges(attacked(spaces, [3, 4], "identical-rows", seed=0), probes, 2, reference)
    assert poisoned["screen drops"] == [3, 4] and poisoned["trimmed-mean (F)"][1] == 1.0
    table = attack_table([{"attack": "identical-rows", "fraction": 0.4, "hostile": [3, 4]} | poisoned])
    assert "| identical-rows | 2 (40%) |" in table and "| refused | refused | 3, 4 |" in table


def test_the_bench_refuses_a_fraction_that_leaves_no_honest_client_in_one_line(capsys):
    assert main(["bench", "attacks", "--fractions", "0.9", "--clients", "3"]) == 2
    assert capsys.readouterr().err == "relatlas: 0.9 of 3 clients leaves no honest client\n"


def test_a_users_robust_merge_is_called_with_the_declared_count(monkeypatch):
    monkeypatch.setattr(AGGREGATIONS, "_entries", dict(AGGREGATIONS._entries))  # the registration ends with the test
    calls = []

    @register_aggregation("first-client", withstands=lambda n: 1)
    def first_client(spaces, weights, masks, *, hostile):
        calls.append(hostile)
        return spaces[0]["cosine"]

    _, spaces = _federation(3, 0)
    aggregate("first-client", spaces, hostile=1)
    aggregate("first-client", spaces[:1])
    assert calls == [1, None]
    with pytest.raises(ValueError, match="first-client withstands 1 of 3: declare fewer"):  # no client count would do
        aggregate("first-client", spaces, hostile=2)
