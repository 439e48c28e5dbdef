"""The DFA transform: no dependency on models, data or training code."""

from dfax.core.points import PointSpec
from dfax.core.selection import (DEFAULT_FEEDBACK, After, FeedbackPoint, after, by_name,
                                 make_selection, make_selector)
from dfax.core.transform import dfa_grad, dfa_value_and_grad

__all__ = ["PointSpec", "DEFAULT_FEEDBACK", "FeedbackPoint", "After", "after", "by_name",
           "make_selection", "make_selector", "dfa_grad", "dfa_value_and_grad"]
