"""SIGTERM and SIGINT during a run: remembered, so the loop saves a checkpoint and stops.

A scheduler's SIGTERM (preemption) or a researcher's Ctrl-C sets a flag instead
of raising in the middle of a step or a checkpoint write; the training loop
reads ``Interrupt.signum`` between steps, writes its checkpoint and exits with
the status docs/reliability.md gives.
"""

from __future__ import annotations

import signal


class Interrupt:
  """SIGTERM/SIGINT set a flag (and remember which); the loop saves and stops.

  Inside the ``with`` block the two signals only set ``signum``; leaving it puts
  the previous handlers back. Off the main thread Python cannot install
  handlers, and the signals stay with the caller.

  Examples:
    >>> import os, signal
    >>> with Interrupt() as interrupt:
    ...   os.kill(os.getpid(), signal.SIGTERM)
    >>> interrupt.signum == signal.SIGTERM
    True
  """

  def __init__(self):
    self.signum = 0
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: signals stay with the caller
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
