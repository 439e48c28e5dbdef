"""Projectors: ``projector(error, points) -> cotangents``, pure functions of keys."""

from dfax.projectors.dense import dense, gaussian, uniform
from dfax.projectors.keys import copy_keys, path_key
from dfax.projectors.shared import shared

__all__ = ["dense", "gaussian", "uniform", "shared", "path_key", "copy_keys"]
