"""Attention-based multiple-instance learning heads over tile embeddings (no Qt)."""

from .model import GatedAttentionMIL, MILOutput

__all__ = ["GatedAttentionMIL", "MILOutput"]
