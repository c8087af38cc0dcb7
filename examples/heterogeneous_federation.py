"""Three clients, three architectures: an MLP, a CNN and a ResNet-8 federate on
Fashion-MNIST through their relative spaces, which have one shape, [samples,
anchors], whatever the encoder and its width.

    python examples/heterogeneous_federation.py [--out-dir runs/heterogeneous]

The same run from the command line::

    relatlas run --dataset fashion-mnist --encoder mlp,cnn,resnet8 --epochs 1 \\
        --anchors 128 --eval-samples 2000 --out-dir runs/heterogeneous

Measured numbers: ``docs/results/heterogeneous.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from relatlas.clients.encoder_spec import EncoderSpec
from relatlas.server.config import RunConfig
from relatlas.server.simulation import run_simulation

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
    args = parser.parse_args()
    config = RunConfig.from_mapping(SETTINGS | {"out-dir": args.out_dir, "tracking-uri": args.tracking_uri})
    run_simulation(config)
    results = json.loads((Path(config.out_dir) / "results.json").read_text())
    print(f"merged space ({config.aggregation}): accuracy {results['merged_accuracy']:.3f}")
    clients = zip(results["client_partitions"], results["client_accuracy"], results["client_embedding_dim"])
    for partition, accuracy, width in clients:
        encoder = EncoderSpec.for_client(config.encoder, partition)
        print(f"client {partition} ({encoder}, {width:g} wide): own space accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
