"""Projectors: ``projector(error, points) -> cotangents``, pure functions of keys."""

from dfax.projectors.callback import host_projector
from dfax.projectors.control import identity, zeros
from dfax.projectors.dense import dense, gaussian, uniform
from dfax.projectors.hadamard import hadamard
from dfax.projectors.keys import copy_keys, path_key
from dfax.projectors.shared import shared

__all__ = ["dense", "gaussian", "uniform", "shared", "hadamard", "host_projector", "zeros",
           "identity", "path_key", "copy_keys"]
