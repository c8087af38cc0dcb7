"""Pure tensor math of relatlas: relative projections, anchors, merges, measures.

Imports neither Flower nor Avalanche, so it can be used and tested on its own.
"""

from relatlas.aggregation.aggregators import aggregate, register_aggregation, required_similarities
from relatlas.aggregation.anchors import select_anchors
from relatlas.aggregation.measures import linear_cka, matched_cosine, mean_reciprocal_rank, topk_jaccard
from relatlas.aggregation.merge import concat_merge, mean_merge, product_merge, standardize_rows
from relatlas.aggregation.projection import relative_projection, relative_subspaces
from relatlas.registries import AGGREGATIONS, SIMILARITIES

__all__ = [
    "AGGREGATIONS",
    "SIMILARITIES",
    "aggregate",
    "concat_merge",
    "linear_cka",
    "matched_cosine",
    "mean_merge",
    "mean_reciprocal_rank",
    "product_merge",
    "register_aggregation",
    "relative_projection",
    "relative_subspaces",
    "required_similarities",
    "select_anchors",
    "standardize_rows",
    "topk_jaccard",
]
