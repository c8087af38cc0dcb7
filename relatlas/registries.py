"""Every extension point of relatlas, with where its built-ins live.

Built-ins are registered by path and imported on first use, so reading the
names (CLI choices, config validation) costs nothing. A user's entry registers
the same way, from a module named with ``--plugins`` (``relatlas.plugins``)::

    from relatlas.registries import AGGREGATIONS
    AGGREGATIONS.register("mine", "my_pkg.merges:mine")
"""

from __future__ import annotations

from relatlas.registry import Registry

ENCODERS: Registry = Registry("encoder", {
    "auto": "relatlas.clients.encoders:auto",
    "mlp": "relatlas.clients.encoders:mlp",
    "cnn": "relatlas.clients.encoders:cnn",
    "resnet8": "relatlas.clients.encoders:resnet8",
    "resnet20": "relatlas.clients.encoders:resnet20",
    "torchvision": "relatlas.clients.backbones:torchvision_backbone",
    "hf": "relatlas.clients.hf_text:hf_text",
    "tfidf": "relatlas.clients.text_encoders:tfidf",
    "bag": "relatlas.clients.text_encoders:bag",
})  # fmt: skip
"""Encoders: ``(input_shape, embedding_dim, **options) -> nn.Module``, the embedder a client trains;
the module maps a batch ``[B, *input_shape]`` to a finite ``[B, embedding_dim]``, checked on one batch
before a run starts (shapes: the docs' Plug-in contract)."""

DATASETS: Registry = Registry("dataset", {
    "digits": "relatlas.benchmarks.builtin_datasets:digits",
    "fashion-mnist": "relatlas.benchmarks.builtin_datasets:fashion_mnist",
    "mnist": "relatlas.benchmarks.builtin_datasets:mnist",
    "cifar10": "relatlas.benchmarks.builtin_datasets:cifar10",
    "npz": "relatlas.benchmarks.builtin_datasets:npz",
    "imagefolder": "relatlas.benchmarks.image_folder:imagefolder",
    "csv": "relatlas.benchmarks.text_tables:csv_table",
    "jsonl": "relatlas.benchmarks.text_tables:jsonl_table",
    "wordnet": "relatlas.benchmarks.wordnet_glosses:wordnet",
})  # fmt: skip
"""Datasets: ``(argument, *, root, seed) -> Dataset``; ``npz:PATH`` passes PATH as the argument.
Inputs may be arrays, strings or lazily read sources (``benchmarks/sources.py``)."""

SIMILARITIES: Registry = Registry("similarity", {
    "cosine": "relatlas.aggregation.similarities:cosine",
    "euclidean": "relatlas.aggregation.similarities:euclidean",
    "l1": "relatlas.aggregation.similarities:l1",
    "linf": "relatlas.aggregation.similarities:linf",
})  # fmt: skip
"""Similarities: a ``Similarity``, how a sample is compared with the anchors (``aggregation/similarities.py``):
``[n, d]`` rows against ``[m, d]`` anchors give ``[n, m]``."""

AGGREGATIONS: Registry = Registry("aggregation", {
    "mean": "relatlas.aggregation.aggregators:mean",
    "product": "relatlas.aggregation.aggregators:product",
    "product-sum": "relatlas.aggregation.aggregators:product_sum",
    "product-learned": "relatlas.aggregation.aggregators:product_learned",
    "product-weighted": "relatlas.aggregation.aggregators:product_weighted",
    "concat": "relatlas.aggregation.aggregators:concat",
    "median": "relatlas.aggregation.aggregators:median",
    "trimmed-mean": "relatlas.aggregation.aggregators:trimmed_mean",
    "krum": "relatlas.aggregation.aggregators:krum",
    "multi-krum": "relatlas.aggregation.aggregators:multi_krum",
})  # fmt: skip
"""Aggregations: an ``Aggregation`` (the similarities clients send, and the merge); ``register_aggregation`` builds one.
A merge takes each client's ``similarity -> [N, m]`` (one client or more, masks or none) and returns a finite ``[N, D]``;
``product-learned`` and ``product-weighted`` also learn from the anchors' labels (``needs_labels``), the rest are label-free.
One with an ``accumulator`` also merges replies one at a time (``aggregation/streaming.py``); krum and concat do not."""

TRANSLATIONS: Registry = Registry("translation", {
    "procrustes": "relatlas.aggregation.translation:translate_by_procrustes",
    "inversion": "relatlas.aggregation.translation:translate_by_inversion",
})  # fmt: skip
"""Translations between two clients' absolute spaces, fitted on seed pairs:
``(samples, own_seeds, reference_seeds) -> Tensor``, the samples in the reference's space."""

ANCHOR_MODES: Registry = Registry("anchor mode", {
    "shared": "relatlas.clients.anchor_mode_shared:shared",
    "class-matched": "relatlas.clients.anchor_mode_class_matched:class_matched",
    "bootstrapped": "relatlas.clients.anchor_mode_bootstrapped:bootstrapped",
    "translated": "relatlas.clients.anchor_mode_translated:translated",
})  # fmt: skip
"""Anchor modes: a server half and a client half each (``relatlas.clients.anchor_modes.AnchorMode``)."""

PAYLOADS: Registry = Registry("payload", {
    "fp32": "relatlas.clients.payload:fp32",
    "fp16": "relatlas.clients.payload:fp16",
    "topk": "relatlas.clients.payload:topk",
})  # fmt: skip
"""Payload codecs: ``(argument) -> PayloadCodec`` (``clients/payload.py``); ``topk:K:P`` passes ``K:P``."""

SPLITS: Registry = Registry("split", {
    "shared-classes": "relatlas.benchmarks.splits:shared_classes",
    "same-classes": "relatlas.benchmarks.splits:same_classes",
    "disjoint-classes": "relatlas.benchmarks.splits:disjoint_classes",
    "dirichlet": "relatlas.benchmarks.splits:dirichlet",
    "iid": "relatlas.benchmarks.splits:iid",
})  # fmt: skip
"""Federated splits of a dataset's classes and samples over the clients: a ``Split`` (``benchmarks/splits.py``)."""

STREAMS: Registry = Registry("stream", {
    "class-incremental": "relatlas.benchmarks.streams:class_incremental",
    "new-instances": "relatlas.benchmarks.streams:new_instances",
})  # fmt: skip
"""Continual streams: how a dataset becomes a sequence of experiences: a ``Stream`` (``benchmarks/streams.py``)."""

STRATEGIES: Registry = Registry("continual strategy", {
    "naive": "relatlas.clients.continual_strategies:naive",
    "replay": "relatlas.clients.continual_strategies:replay",
    "er-ace": "relatlas.clients.continual_strategies:er_ace",
    "der": "relatlas.clients.continual_strategies:der",
})  # fmt: skip
"""Continual strategies: ``(model, optimizer, config, **common) -> avalanche SupervisedTemplate``."""

REGULARIZERS: Registry = Registry("regularizer", {
    "none": "relatlas.clients.continual_strategies:no_regularizer",
    "casper": "relatlas.clients.continual_strategies:casper",
})  # fmt: skip
"""Continual regularisers: ``(config, *, seed) -> list of avalanche plugins``."""

ALGORITHMS: Registry = Registry("algorithm", {
    "relatlas": "relatlas.server.algorithms:relatlas",
    "local": "relatlas.server.algorithm_local:local",
    "fedavg": "relatlas.server.algorithm_fedavg:fedavg",
    "fedproto": "relatlas.server.algorithm_fedproto:fedproto",
    "centralised": "relatlas.server.algorithm_centralised:centralised",
})  # fmt: skip
"""Federated algorithms: a ``FederatedAlgorithm`` (``server/algorithms.py``), the ClientApp and ServerApp a run
starts; ``--algorithm NAME[:ARGUMENT]`` (``fedproto:2`` passes ``2``). ``relatlas`` is the relative-space merge."""

PRECISIONS: Registry = Registry("precision", {
    "fp32": "relatlas.clients.precision:fp32",
    "tf32": "relatlas.clients.precision:tf32",
    "bf16": "relatlas.clients.precision:bf16",
})  # fmt: skip
"""Precisions: a ``Precision`` (``clients/precision.py``), the arithmetic of a client's training and projection on CUDA."""

ATLAS_OBJECTIVES: Registry = Registry("atlas objective", {
    "mse": "relatlas.aggregation.atlas_objectives:mse",
    "kl-rows": "relatlas.aggregation.atlas_objectives:kl_rows",
    "neighbourhood": "relatlas.aggregation.atlas_objectives:neighbourhood",
    "neighbourhood-centred": "relatlas.aggregation.atlas_objectives:neighbourhood_centred",
    "neighbourhood-rows": "relatlas.aggregation.atlas_objectives:neighbourhood_rows",
    "neighbourhood-uncertain": "relatlas.aggregation.atlas_objectives:neighbourhood_uncertain",
    "neighbour-contrastive": "relatlas.aggregation.atlas_objectives:neighbour_contrastive",
    "neighbourhood-residual": "relatlas.aggregation.atlas_objectives:neighbourhood_residual",
})  # fmt: skip
"""Atlas objectives: ``(own_rows, atlas_rows, **options) -> loss``, the alignment a client adds, times
``--atlas-weight``, to its own loss on a batch of public-pool samples (``aggregation/atlas_objectives.py``)."""
