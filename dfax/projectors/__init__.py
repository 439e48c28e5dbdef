"""Projectors: ``projector(error, points) -> cotangents``, pure functions of keys."""

from dfax.projectors.callback import columns_on_host, host_device, host_projector
from dfax.projectors.control import identity, zeros
from dfax.projectors.dense import dense, gaussian, uniform
from dfax.projectors.hadamard import hadamard
from dfax.projectors.keys import copy_keys, path_key
from dfax.projectors.per_point import per_point
from dfax.projectors.shared import shared

__all__ = ["dense", "gaussian", "uniform", "shared", "hadamard", "per_point", "host_device",
           "columns_on_host", "host_projector",
           "zeros", "identity", "path_key", "copy_keys"]
