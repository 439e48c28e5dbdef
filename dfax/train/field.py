"""``Field``: one config field's record (dotted name, default, one-line help).

The trainer's fixed fields (``dfax.train.config_schema``), each model family's
``model.*`` fields (``dfax.train.families``) and each dataset's ``dataset.*``
fields (``dfax.train.datasets``) are all ``Field`` records; ``default_config``,
``--help``, validation and docs/config.md read them.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field: what ``--config.<name>=<value>`` sets.

  Attributes:
    name: dotted path in the config, e.g. ``"dfa.projector"`` (within its
      section for model and dataset fields, e.g. ``"d_model"``).
    default: the value a fresh config gives it.
    help: one line saying what it does (allowed values, units).
    type: for a ``None`` default, the type a value set from the command line
      has (``--config.dfa.opu.topk=0.1``): the field is then an
      ``ml_collections`` placeholder of that type.
    choices: the values the field may take, where they are a fixed set;
      validation refuses any other before anything is built or written.

  Examples:
    >>> Field("seed", 0, "initialisation seed").default
    0
    >>> Field("topk", None, "fraction on", type=float).config_value().get_type()
    <class 'float'>
  """

  name: str
  default: Any
  help: str
  type: type | None = None
  choices: tuple[Any, ...] = ()

  def config_value(self) -> Any:
    """What a fresh ConfigDict holds: the default, or a typed placeholder for ``None``."""
    if self.default is None and self.type is not None:
      from ml_collections import config_dict  # noqa: PLC0415
      return config_dict.placeholder(self.type)
    return self.default


def with_choices(choices: tuple[Any, ...], text: str) -> str:
  """A field's help led by its allowed values, as ``--help`` and docs/config.md show them.

  Examples:
    >>> with_choices(("max", "avg"), "the pooling after each conv")
    'max | avg: the pooling after each conv'
  """
  return " | ".join(map(str, choices)) + ": " + text


def dataclass_default(cls: type, name: str) -> Any:
  """The default of field ``name`` of dataclass ``cls`` (a linen Module or a config).

  Args:
    cls: a dataclass, e.g. ``dfax.models.TransformerConfig``.
    name: one of its fields.

  Returns:
    The field's default value.

  Raises:
    KeyError: if ``cls`` has no such field or it has no default.

  Examples:
    >>> from dfax.models import TransformerConfig
    >>> dataclass_default(TransformerConfig, "d_model")
    128
  """
  for field in dataclasses.fields(cls):
    if field.name == name:
      if field.default is not dataclasses.MISSING:
        return field.default
      if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
      break
  raise KeyError(f"{cls.__name__}.{name} has no default")


def section(name: str, fields: tuple[Field, ...], changes: dict[str, Any], kind: str):
  """A config section for record ``name``: its fields' defaults, ``changes`` applied.

  Args:
    name: the record's name, stored as the section's ``name``.
    fields: the record's fields.
    changes: values that differ from the defaults.
    kind: what the record is, for the error (``"dataset"``, ``"model family"``).

  Returns:
    An ``ml_collections.ConfigDict``.

  Raises:
    KeyError: for a change to a field the record does not have.

  Examples:
    >>> section("mlp", (Field("features", (8,), "widths"),), {"features": (4,)}, "model").features
    (4,)
  """
  import ml_collections  # noqa: PLC0415

  known = {f.name: f.config_value() for f in fields}
  unknown = sorted(set(changes) - set(known))
  if unknown:
    raise KeyError(f"{kind} {name!r} has no fields {unknown}; its fields: {sorted(known)}")
  return ml_collections.ConfigDict({"name": name, **known, **changes})
