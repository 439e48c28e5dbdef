"""dfax: Direct Feedback Alignment for any Flax model.

Switch ``jax.grad`` to ``dfax.dfa_grad``::

  grads = dfax.dfa_grad(loss_fn)(params, x, y)
"""

from dfax import projectors
from dfax.core import (DEFAULT_FEEDBACK, FeedbackPoint, PointSpec, by_name, dfa_grad,
                       dfa_value_and_grad)

__version__ = "0.1.0"

__all__ = ["dfa_grad", "dfa_value_and_grad", "FeedbackPoint", "PointSpec", "by_name",
           "DEFAULT_FEEDBACK", "projectors"]
