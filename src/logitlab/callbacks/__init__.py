"""Callbacks for :meth:`logitlab.Sequential.fit`."""

from ._callbacks import Callback, EarlyStopping, History, ModelCheckpoint

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint"]
