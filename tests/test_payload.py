import torch

from relatlas.clients.payload import add_gaussian_noise


def test_payload_noise_is_seeded_and_has_the_asked_spread():
    spaces = {"cosine": torch.zeros(400, 50)}
    first, again = add_gaussian_noise(spaces, 0.1, seed=3), add_gaussian_noise(spaces, 0.1, seed=3)
    assert torch.equal(first["cosine"], again["cosine"])
    assert not torch.equal(first["cosine"], add_gaussian_noise(spaces, 0.1, seed=4)["cosine"])
    assert abs(first["cosine"].std().item() - 0.1) < 0.005
