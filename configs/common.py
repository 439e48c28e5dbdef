"""Defaults shared by every config: dfax.train.config_schema.default_config, the one schema."""

from dfax.train.config_schema import default_config as base_config  # noqa: F401
