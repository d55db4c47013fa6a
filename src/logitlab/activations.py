"""Activations by name, each a forward function with its hand-written backward.

>>> from logitlab import activations
>>> activations.get("relu")([-1.0, 2.0])
array([0., 2.])
"""

from .layers._activations import ACTIVATIONS, Activation, get

__all__ = ["Activation", "ACTIVATIONS", "get"]
