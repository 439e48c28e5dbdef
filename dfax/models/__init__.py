"""Plain Flax (linen) models. The Transformer blocks carry identity FeedbackPoint markers."""

from dfax.models.cnn import CNN  # noqa: F401
from dfax.models.mlp import ACTIVATIONS, MLP, get_activation  # noqa: F401
from dfax.models.transformer import Block, TransformerConfig, TransformerLM, lm_forward  # noqa: F401
from dfax.models.vit import ViT, ViTConfig  # noqa: F401
from dfax.models import presets  # noqa: F401
