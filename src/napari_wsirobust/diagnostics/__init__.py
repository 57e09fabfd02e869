"""Robustness diagnostics: how much embeddings and predictions depend on the scanner (no Qt)."""

from .knn import NeighbourCounts, choose_k, nearest_neighbours, neighbour_counts, robustness_index

__all__ = ["NeighbourCounts", "choose_k", "nearest_neighbours", "neighbour_counts", "robustness_index"]
