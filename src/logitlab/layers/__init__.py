"""Layers for :class:`logitlab.Sequential`: Dense, Activation, Dropout, and regularizers."""

from ._layers import L1, L1L2, L2, Activation, Dense, Dropout, Layer

__all__ = ["Layer", "Dense", "Activation", "Dropout", "L1", "L2", "L1L2"]
