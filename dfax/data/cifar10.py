"""CIFAR-10 through tensorflow-datasets (``tfds`` name ``cifar10``), as float32 arrays.

dfax ships no copy of CIFAR-10 and never downloads it itself: ``load_cifar10``
reads a copy that tensorflow-datasets has prepared in the ``array_record``
format (``tfds build cifar10 --file_format=array_record``, which needs
TensorFlow and the network once) from ``data_dir`` or tfds' default
(``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Offline with nothing
prepared it fails at once with ``DataUnavailableError`` naming the fix.
"""

from __future__ import annotations

import os

import numpy as np

from dfax.data import tfds_source
from dfax.data.batching import Dataset

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# Per-channel mean and std of the CIFAR-10 training images (pixel values in [0, 1]).
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def preprocess(images: np.ndarray, standardize: bool = True) -> np.ndarray:
  """uint8 images ``(N, 32, 32, 3)`` -> float32, scaled to [0, 1] and optionally standardised.

  Args:
    images: uint8 pixel values.
    standardize: subtract the per-channel training mean and divide by its std.

  Returns:
    float32 array of the same shape.

  Raises:
    ValueError: images not of shape ``(N, 32, 32, 3)``.

  Examples:
    >>> preprocess(np.full((1, 32, 32, 3), 255, np.uint8), standardize=False).max()
    np.float32(1.0)
  """
  if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
    raise ValueError(f"CIFAR-10 images must have shape (N, 32, 32, 3), got {images.shape}; "
                     "is the tfds data_dir holding another data set under the name cifar10?")
  x = images.astype(np.float32) / np.float32(255.0)
  return (x - MEAN) / STD if standardize else x


def load_cifar10(data_dir: str | os.PathLike | None = None, *, standardize: bool = True,
                 download: bool = True) -> Dataset:
  """CIFAR-10's 50,000 training and 10,000 test images, read through tfds.

  Args:
    data_dir: the tfds data directory holding a prepared ``cifar10``; None
      uses tfds' default (``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    standardize: per-channel standardisation (see ``preprocess``).
    download: let tfds download and prepare when nothing is prepared and the
      network answers (preparing CIFAR-10 needs TensorFlow).

  Returns:
    A ``Dataset`` with float32 images ``(N, 32, 32, 3)`` and int32 labels.

  Raises:
    DataUnavailableError: nothing prepared and no download possible.

  Examples:
    Needs CIFAR-10 prepared by tensorflow-datasets (or the network to prepare
    it), so it is not run as a doctest:

    >>> ds = load_cifar10("~/tensorflow_datasets")   # doctest: +SKIP
    >>> ds.x_train.shape                             # doctest: +SKIP
    (50000, 32, 32, 3)
  """
  raw = tfds_source.load_tfds("cifar10", data_dir=None if data_dir is None else str(data_dir),
                              download=download)
  return Dataset(preprocess(raw.x_train, standardize), raw.y_train.astype(np.int32),
                 preprocess(raw.x_test, standardize), raw.y_test.astype(np.int32),
                 num_classes=NUM_CLASSES, name="cifar10")
