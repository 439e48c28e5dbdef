"""A numpy stand-in for ``lightonml.OPU(simulated=True)``, for machines without lightonml.

It reproduces lightonml 1.4.3's simulated device (``SimulatedOpuDevice``:
a complex matrix with Re, Im ~ N(0, 1/n_features) from numpy's
``RandomState(0)``, cast to float32; ``transform`` is |x R|^2, and
``linear_transform`` is Re(x R) divided by sqrt(n_features), lightonml's
default ``OutputRescaling.variance``) through the part of the ``OPU`` API the
backend uses. ``test_standin_matches_lightonml`` checks it against lightonml
where that is installed.
"""

from __future__ import annotations

import numpy as np


class SimulatedOpuDevice:
  """The simulated medium; named like lightonml's so the backend treats it as simulated."""

  def __init__(self):
    self.random_matrix = None

  def build_random_matrix(self, n_features: int, n_components: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    std = 1.0 / np.sqrt(n_features)
    re = rng.normal(0.0, std, (n_features, n_components)).astype(np.float32)
    im = rng.normal(0.0, std, (n_features, n_components)).astype(np.float32)
    self.random_matrix = re + 1j * im


class StandinOPU:
  """``OPU(n_components, max_n_features, simulated=True)`` without lightonml."""

  def __init__(self, n_components: int = 200000, max_n_features: int = 1000):
    self.device = SimulatedOpuDevice()
    self._n_components, self._max_n_features = n_components, max_n_features
    self._n_features = None
    self.device.build_random_matrix(max_n_features, n_components)

  @property
  def n_components(self) -> int:
    return self._n_components

  @n_components.setter
  def n_components(self, value: int):
    self._n_components = value
    self.device.build_random_matrix(self._max_n_features, value)

  @property
  def max_n_features(self) -> int:
    return self._max_n_features

  @max_n_features.setter
  def max_n_features(self, value: int):
    self._max_n_features = value
    self.device.build_random_matrix(value, self._n_components)

  def fit1d(self, X=None, n_features: int | None = None):
    self._n_features = n_features if X is None else X.shape[-1]

  def _product(self, x):
    x = np.asarray(x)
    assert x.shape[-1] == self._n_features, "call fit1d with the frames' width first"
    return x @ self.device.random_matrix[:self._n_features]

  def transform(self, x):
    return (np.abs(self._product(x)) ** 2).astype(np.float32)

  def linear_transform(self, x):
    return (self._product(x).real / np.sqrt(self._n_features)).astype(np.float32)
