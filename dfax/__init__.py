"""dfax: Direct Feedback Alignment for any Flax model.

Switch ``jax.grad`` to ``dfax.dfa_grad``::

  grads = dfax.dfa_grad(loss_fn)(params, x, y)
"""

import importlib

from dfax import projectors
from dfax.core import (DEFAULT_FEEDBACK, FeedbackPoint, PointSpec, after, by_name, dfa_grad,
                       dfa_value_and_grad)

__version__ = "0.1.0"

__all__ = ["dfa_grad", "dfa_value_and_grad", "FeedbackPoint", "PointSpec", "after", "by_name",
           "DEFAULT_FEEDBACK", "projectors", "nnx", "opu"]

_LAZY = ("nnx", "opu", "models", "data", "train", "parallel")


def __getattr__(name):
  # Imported on first use: flax.nnx, the OPU simulator etc. cost start-up time.
  if name in _LAZY:
    return importlib.import_module(f"dfax.{name}")
  raise AttributeError(f"module 'dfax' has no attribute {name!r}")
