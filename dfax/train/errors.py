"""The trainer's errors and the exit status the CLI gives each of them.

Every error the trainer raises on purpose is a :class:`RunError`: its message
is one or a few lines that name the problem and the fix, and the CLI prints
it without a traceback. Which exit status a run ends with (see
docs/reliability.md):

  ====  ===========================================================
  0     the run completed (or the workdir already held its result)
  1     the run stopped on an error (non-finite loss, disk full, ...)
  2     the run was refused before it started; nothing was written
  130   interrupted by SIGINT (Ctrl-C); a checkpoint was saved
  143   interrupted by SIGTERM; a checkpoint was saved
  ====  ===========================================================
"""

from __future__ import annotations


EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2


class RunError(Exception):
  """A failure the trainer explains itself; ``exit_code`` is the CLI's status."""

  exit_code = EXIT_ERROR


class ConfigError(RunError, ValueError):
  """A config value, file or workdir is unusable; raised before anything is written."""

  exit_code = EXIT_REFUSED


class WorkdirBusyError(RunError):
  """Another live process trains into the same workdir."""

  exit_code = EXIT_REFUSED


class ConfigChangedError(RunError):
  """A resume whose config differs from the saved one in ways that alter the run."""

  exit_code = EXIT_REFUSED


class ResumeError(RunError, ValueError):
  """The workdir cannot be resumed (no readable checkpoint, model mismatch, a damaged file)."""

  exit_code = EXIT_REFUSED


class NonFiniteLossError(RunError, FloatingPointError):
  """A step gave a non-finite loss or update; the last finite state is saved."""


class WriteFailedError(RunError, OSError):
  """A checkpoint or metrics row could not be written (e.g. a full disk).

  The message names the directory, the step and the checkpoints still intact.
  """


def interrupt_exit_code(signum: int) -> int:
  """The status a shell reports for a process ended by ``signum``: 128 + signum.

  Args:
    signum: the signal number.

  Returns:
    ``128 + signum``.

  Examples:
    >>> import signal
    >>> interrupt_exit_code(signal.SIGTERM), interrupt_exit_code(signal.SIGINT)
    (143, 130)
  """
  return 128 + int(signum)


def refused(error: BaseException, what: str, fix: str = "") -> ConfigError:
  """``error`` as a one-line :class:`ConfigError`: ``dfax.train: <what>: <its message>. <fix>``.

  A message that is already the trainer's own (it starts with ``dfax.train:``)
  is kept as it is.

  Examples:
    >>> str(refused(ValueError("norm must be 'pre' or 'post', got 'x'."),
    ...             "config.model cannot build model 'transformer_lm'"))
    "dfax.train: config.model cannot build model 'transformer_lm': norm must be 'pre' or 'post', got 'x'."
  """
  message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  if message.startswith("dfax.train:"):
    return ConfigError(message)
  return ConfigError(f"dfax.train: {what}: {message.rstrip('.')}." + (f" {fix}" if fix else ""))
