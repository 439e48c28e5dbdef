"""dfax: Direct Feedback Alignment for any Flax model.

Switch ``jax.grad`` to ``dfax.dfa_grad``.

Examples:
  >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
  >>> model = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
  >>> x = jnp.ones((4, 5))
  >>> params = model.init(jax.random.key(0), x)
  >>> loss_fn = lambda p: model.apply(p, x).sum()
  >>> grads = dfax.dfa_grad(loss_fn)(params)    # was: jax.grad(loss_fn)(params)
  >>> jax.tree.structure(grads) == jax.tree.structure(params)
  True
"""

import importlib
import importlib.metadata

from dfax import _startup  # no JAX: `python -m dfax.train` handles Ctrl-C from here on

_startup.install_if_cli()  # before JAX is imported (docs/reliability.md, "Signals")

from dfax import projectors  # noqa: E402
from dfax.core import (DEFAULT_FEEDBACK, FeedbackPoint, PointSpec, Projector, after, by_name, dfa_grad,
                       dfa_value_and_grad, encoder_decoder, exact, exact_boundary, exactly,
                       is_norm_layer, pooled)

try:
  __version__ = importlib.metadata.version("dfax-flax")
except importlib.metadata.PackageNotFoundError:  # a source tree that was not pip-installed
  __version__ = "0+unknown"

__all__ = ["dfa_grad", "dfa_value_and_grad", "exact", "exactly", "exact_boundary", "FeedbackPoint",
           "PointSpec", "Projector", "after", "by_name",
           "is_norm_layer", "pooled", "encoder_decoder", "DEFAULT_FEEDBACK", "projectors", "nnx",
           "opu", "testing"]

_LAZY = ("nnx", "opu", "models", "data", "train", "parallel", "testing")


def __getattr__(name):
  # Imported on first use: flax.nnx, the OPU simulator etc. cost start-up time.
  if name in _LAZY:
    return importlib.import_module(f"dfax.{name}")
  raise AttributeError(f"module 'dfax' has no attribute {name!r}")
