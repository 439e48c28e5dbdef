"""Ctrl-C and SIGTERM while ``python -m dfax.train`` starts: leave at once, quietly.

Until the trainer takes the signals over (it then saves a checkpoint before it
stops) nothing has been written, so a signal ends the process at once with
128 + signal and one line. The handlers are installed from ``import dfax``
itself when the process is ``python -m dfax.train`` (before JAX is imported:
a KeyboardInterrupt raised inside JAX's imports can be swallowed by a garbage
collector callback, and the run would go on), and again by ``__main__``.
This module imports nothing heavy.
"""

import os
import signal
import sys

MESSAGE = b"dfax.train: interrupted during start-up; nothing was written.\n"


def _quit(signum, frame):
  del frame
  os.write(2, MESSAGE)
  os._exit(128 + signum)


def install() -> None:
  """SIGINT and SIGTERM end the process at once, with 128 + signal and one line."""
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, _quit)


def is_cli() -> bool:
  """Whether this process is ``python [options] -m dfax.train ...``."""
  argv = list(getattr(sys, "orig_argv", ()))
  return any(a == "-m" and argv[i + 1:i + 2] == ["dfax.train"] for i, a in enumerate(argv)) or \
      "-mdfax.train" in argv


def install_if_cli() -> None:
  """:func:`install` when this process is ``python -m dfax.train`` (else nothing)."""
  if is_cli():
    install()
