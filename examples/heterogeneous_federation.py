"""Three clients, three architectures: an MLP, a CNN and a ResNet-8 federate on
Fashion-MNIST through their relative spaces, which have one shape, [samples,
anchors], whatever the encoder and its width.

    python examples/heterogeneous_federation.py [--out-dir runs/heterogeneous]

Any run-config key may be changed with ``--set KEY=VALUE`` (the tests run it on
digits with three MLPs of different widths, since digits are not images).

The same run from the command line::

    relatlas run --dataset fashion-mnist --encoder mlp,cnn,resnet8 --epochs 1 \\
        --anchors 128 --eval-samples 2000 --out-dir runs/heterogeneous

Measured numbers: ``docs/results/heterogeneous.md``.
"""

from __future__ import annotations

import argparse
import json

import relatlas
from relatlas.encoder_spec import EncoderSpec

SETTINGS = {
    "dataset": "fashion-mnist",
    "encoder": "mlp,cnn,resnet8",  # client i trains encoder i: each spec may add options, e.g. mlp:hidden=128:dim=32
    "epochs": 1,
    "anchors": 128,
    "eval-samples": 2000,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="runs/heterogeneous")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another run-config value (JSON)")
    args = parser.parse_args()
    overrides = dict(_setting(text) for text in args.set)
    results = relatlas.run(SETTINGS | {"out-dir": args.out_dir, "tracking-uri": args.tracking_uri} | overrides)
    config = results.config
    print(f"merged space ({config.aggregation}): accuracy {results.merged_accuracy:.3f}")
    clients = zip(results.raw["client_partitions"], results.client_accuracy, results.raw["client_embedding_dim"])
    for partition, accuracy, width in clients:
        encoder = EncoderSpec.for_client(config.encoder, partition)
        print(f"client {partition} ({encoder}, {width:g} wide): own space accuracy {accuracy:.3f}")


def _setting(text: str) -> tuple[str, object]:
    """``epochs=2`` -> ``("epochs", 2)``; a value that is not JSON stays a string."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


if __name__ == "__main__":
    main()
