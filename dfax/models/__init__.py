"""Plain Flax (linen) models: nothing DFA-specific inside them."""

from dfax.models.cnn import CNN  # noqa: F401
from dfax.models.mlp import ACTIVATIONS, MLP, get_activation  # noqa: F401
