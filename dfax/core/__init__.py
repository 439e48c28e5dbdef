"""The DFA transform: no dependency on models, data or training code."""

from dfax.core.points import PointSpec
from dfax.core.projector import Projector
from dfax.core.cuts import exact, exact_boundary
from dfax.core.selection import (DEFAULT_FEEDBACK, After, Exactly, FeedbackPoint, Pooled, after,
                                 by_name, encoder_decoder, exactly, is_norm_layer,
                                 make_selection, pooled)
from dfax.core.transform import dfa_grad, dfa_value_and_grad

__all__ = ["PointSpec", "Projector", "DEFAULT_FEEDBACK", "FeedbackPoint", "After", "after",
           "by_name", "Pooled", "pooled", "encoder_decoder", "Exactly", "exactly",
           "is_norm_layer", "make_selection", "dfa_grad", "dfa_value_and_grad", "exact",
           "exact_boundary"]
