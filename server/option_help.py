"""One line per run-config key for ``relatlas run --help``; the CLI adds the
allowed values (``server.config.CHOICES``) and the default."""

from __future__ import annotations

HELP = {
    "dataset": "NAME, or npz:PATH (arrays X, y; optional X_test, y_test)",
    "data-root": "torchvision root of fashion-mnist, mnist or cifar10",
    "split": "how the clients' training data differ",
    "num-clients": "simulated clients (SuperNodes)",
    "shared-classes": "classes every client holds (shared-classes split)",
    "novel-classes": "classes each client alone holds (0: the rest dealt evenly)",
    "alpha": "Dirichlet concentration of the dirichlet split",
    "client-data": (
        "each client's own training data instead of a split of --dataset (then the public pool only): dataset specs, "
        "comma-separated and cycled over the clients, or node: each SuperNode's --node-config data=SPEC"
    ),
    "class-names": "the run's label list, comma-separated, that clients with their own data map onto (empty: the dataset's)",
    "local-test-fraction": "of each client's training data, a seeded stratified part held back to score its own model (0: none)",
    "public-pool": "training rows held out of every client's partition as the public pool the atlas is made of (0: none)",
    "atlas-weight": "W: each client adds W x the atlas objective on public-pool batches from round 2 (0: no feedback)",
    "atlas-objective": "how a client is pulled towards the atlas (the merged relative space of the public pool)",
    "atlas-leave-one-out": "send each client the merge of the others' pool rows, not everyone's (needs atlas-weight > 0)",
    "anchors": "anchor samples each relative representation is measured against",
    "anchor-sampling": "how the public anchors are drawn",
    "anchors-mode": "where the anchors come from: shared, or each client's own samples",
    "seed-anchors": "public seed pairs of the bootstrapped and translated modes",
    "translation": "how translated mode moves a client into the reference's space",
    "aggregation": "how the server merges the clients' relative spaces",
    "payload": "how clients pack relative spaces: NAME, or topk:K or topk:K:P",
    "payload-noise": "sigma of the Gaussian noise clients add before sending",
    "merge-weights": "weight each client equally or by its sample count",
    "outlier-threshold": "drop a client this many times the typical distance from the median space (0: off)",
    "max-hostile": "hostile clients the merge must withstand: a count, or a fraction below 1; sizes trimmed-mean, krum (0: none)",
    "rounds": "federated rounds (continual: one per experience)",
    "fraction-train": "share of the clients trained each round, a seeded sample (1: every client, every round)",
    "min-train-nodes": "clients trained each round at least, whatever fraction-train gives (0: no floor)",
    "epochs": "local epochs per round",
    "batch-size": "local training batch size",
    "learning-rate": "local Adam learning rate",
    "precision": "arithmetic of the clients' training and projection on CUDA: tf32 matmuls or bf16 autocast (CPU: fp32)",
    "embedding-dim": "width of each client's latent space",
    "encoder": (
        "each client's encoder, NAME[:KEY=VALUE...] (dim=N: that client's width; auto: the CNN for 28x28 and larger "
        "images), comma-separated and cycled over the clients"
    ),
    "seed": "the same seed gives the same numbers (0 to 2^32-1)",
    "min-clients": "valid replies a round needs to go on",
    "node-timeout": "seconds to wait for the clients to connect",
    "round-timeout": "seconds to wait for a round's replies",
    "num-cpus": "Ray CPUs per simulated client",
    "num-gpus": "Ray GPUs per simulated client (fractions share one)",
    "ray-address": "join this Ray cluster (auto: the local one); empty: RAY_ADDRESS, else a new instance",
    "probe-epochs": "epochs of the probes that score each space",
    "eval-samples": "score a seeded stratified subset of the test set (0: all)",
    "client-scores": "also score each client's own space, stitching and the concatenation",
    "scenario": "static federation, or continual: one Avalanche experience per round",
    "experiences": "experiences of the continual stream",
    "stream": "class- or domain-incremental continual stream",
    "strategy": "Avalanche strategy of each continual client",
    "regularizer": "CaSpeR spectral regulariser, or none",
    "buffer": "replay memory per client, in samples",
    "casper-rho": "weight of the CaSpeR loss",
    "casper-classes": "CaSpeR's p (0: the stream's classes per experience)",
    "casper-batch": "CaSpeR graph batch size (0: batch-size)",
    "casper-k": "neighbours of CaSpeR's k-NN graph",
    "simulation-baselines": "also compute the centralised and concatenated-absolute references",
    "out-dir": "where results.json, the figures and the checkpoint go",
    "tracking-uri": "MLflow store: sqlite:///FILE, or an MLflow server (http://host:5000), checked with an MLflow call",
    "experiment": "MLflow experiment name (at most 256 characters)",
    "parent-run": "MLflow run id to nest this run under",
    "resume": "continue the killed or interrupted run of this out-dir",
    "plugins": "comma-separated modules to import first, in every process: they register encoders, aggregations, ...",
    "algorithm": (
        "the federated algorithm: relatlas (the relative-space merge) or a baseline in the same harness; "
        "fedproto:LAMBDA sets FedProto's prototype weight"
    ),
}
