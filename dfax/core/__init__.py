"""The DFA transform: no dependency on models, data or training code."""

from dfax.core.points import PointSpec
from dfax.core.selection import (DEFAULT_FEEDBACK, After, FeedbackPoint, Pooled, after, by_name,
                                 encoder_decoder, is_norm_layer, make_selection, make_selector,
                                 pooled)
from dfax.core.transform import dfa_grad, dfa_value_and_grad

__all__ = ["PointSpec", "DEFAULT_FEEDBACK", "FeedbackPoint", "After", "after", "by_name",
           "Pooled", "pooled", "encoder_decoder",
           "is_norm_layer", "make_selection", "make_selector", "dfa_grad", "dfa_value_and_grad"]
