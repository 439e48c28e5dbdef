"""The ``python -m dfax.train`` command: flags, one-line errors, exit statuses.

Exit statuses (see dfax.train.errors and docs/reliability.md): 0 completed
or already complete, 1 stopped on an error, 2 refused before starting
(nothing written), 130 / 143 interrupted by SIGINT / SIGTERM with a
checkpoint saved.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys
import textwrap

from absl import flags, logging
from ml_collections import config_flags

from dfax.data import DataUnavailableError
from dfax.train import config_file, config_schema, distributed, metrics
from dfax.train.errors import EXIT_OK, EXIT_REFUSED, ConfigError, RunError, interrupt_exit_code
from dfax.train.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_ALLOW = flags.DEFINE_list(
    "allow_changes", [], "Config keys (or sections, e.g. dfa) allowed to differ from the "
    "workdir's saved config on resume; the change is recorded in changes.jsonl.")
_SKIP = flags.DEFINE_list(
    "skip_batches", [], "Comma-separated steps whose batches get no update (those a "
    "non-finite-loss error names); recorded in changes.jsonl.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Start jax.distributed first: one process per host (GPU node, SLURM "
    "task, TPU VM worker), the batch sharded over every device of every process; process 0 "
    "writes the workdir. The cluster's environment gives the coordinator unless the three "
    "flags below are set.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "With --multihost: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --multihost: how many processes the run has.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "With --multihost: this process's index, from 0.")
_RESTART = flags.DEFINE_bool(
    "restart", False, "Start over in a workdir that holds a run: its files are first moved to "
    "WORKDIR/restarted-<time>/ (kept, never deleted).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str, code: int) -> None:
  print(message, file=sys.stderr)
  sys.exit(code)


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of ``--name=V`` / ``--name V`` in ``argv`` (the last one), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
      value = argv[i + 1]
    elif arg.startswith((f"--{name}=", f"-{name}=")):
      value = arg.split("=", 1)[1]
  return value


def _check_config_file(argv: list[str]) -> None:
  """The config file loads on its own, before absl parses it (one line, exit 2, if not)."""
  path = _flag_value(argv, "config")
  overrides = [a.split("=")[0] for a in argv if a.startswith(("--config.", "-config."))]
  if path is None:
    if overrides:
      _fail(f"dfax.train: {', '.join(overrides)} override(s) need --config=<file>; add e.g. "
            "--config=configs/smoke.py.", EXIT_REFUSED)
    return
  if not path.strip():
    _fail("dfax.train: --config is empty; give a config file such as "
          "--config=configs/smoke.py.", EXIT_REFUSED)
  file = path if os.path.isfile(path) or ":" not in path else path.rsplit(":", 1)[0]
  if not os.path.isfile(file):
    _fail(f"dfax.train: cannot load the config file {path!r}: it does not exist; give a path "
          "such as --config=configs/smoke.py.", EXIT_REFUSED)
  if file != path:  # a config_file.py:argument form: get_config(argument), left to absl
    return
  try:
    config_file.load_config(file)
  except ConfigError as e:
    _fail(str(e), EXIT_REFUSED)


_HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")
_FLAG_ORDER = ("config", "workdir", "allow_changes", "skip_batches", "restart", "multihost",
               "coordinator_address", "num_processes", "process_id")


def usage() -> str:
  """The ``--help`` text: the command, its flags, and every config field with its default.

  The config fields come from ``dfax.train.config_schema.FIELDS``.

  Returns:
    The text ``python -m dfax.train --help`` prints.
  """
  lines = ["usage: python -m dfax.train --config=FILE --workdir=DIR [--config.FIELD=VALUE ...]",
           "", "Trains the model a config file describes; rerun the same command to resume.",
           "Exit status: 0 done, 1 stopped on an error, 2 refused (nothing written),",
           "130/143 interrupted (checkpoint saved). --helpfull lists absl's own flags.",
           "", "flags:"]
  for name in _FLAG_ORDER:
    text = " ".join(flags.FLAGS[name].help.split())
    lines += textwrap.wrap(text, 96, initial_indent=f"  --{name}: ", subsequent_indent="      ")
  lines += ["", "config fields, --config.FIELD=DEFAULT (a config file sets its own values):",
            config_schema.fields_help(), "", config_schema.choices_help()]
  return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad config file or ``--config.<field>`` reported in one line."""
  if any(a in _HELP_FLAGS for a in argv[1:]):
    print(usage())
    sys.exit(EXIT_OK)
  _check_config_file(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"dfax.train: {e}", EXIT_REFUSED)
  except (AttributeError, KeyError) as e:  # ml_collections: an override of no field
    text = str(e.args[0]) if e.args else str(e)  # ml_collections escapes quotes, newlines
    text = text.replace("\\'", "'").replace("\\n", "\n")
    field, _, hint = text.partition("\n")
    field = field.strip("\"' ")
    hint = hint.strip().strip("\"'").rstrip("?").replace("Did", "did")
    hint = f" ({hint}?)" if hint else ""
    given = [a.split("=")[0] for a in argv if a.startswith("--config.") and field in a]
    _fail(f"dfax.train: {', '.join(given) or field} names no field of the config file{hint}; "
          "overrides are --config.<field>=<value> with the fields of the file (see "
          "python -m dfax.train --help).", EXIT_REFUSED)


def _load_config():
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  try:
    config = _CONFIG.value
    config.to_dict()  # the file is loaded lazily: load it here
    return config
  except OSError:
    _fail(f"dfax.train: cannot load the config file {path!r}: it does not exist or does "
          "not define get_config(); give a path such as --config=configs/smoke.py.",
          EXIT_REFUSED)
  except Exception as e:  # noqa: BLE001 - a config file that raises while loading
    _fail(f"dfax.train: the config file {path} failed to load: {type(e).__name__}: {e}",
          EXIT_REFUSED)


def _not_orbax(record: std_logging.LogRecord) -> bool:
  return f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_logging() -> None:
  """Warnings as plain lines; orbax's own logs off (its failures reach the user as one line)."""
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  logging.get_absl_handler().setFormatter(std_logging.Formatter("%(message)s"))
  std_logging.getLogger("absl").addFilter(_not_orbax)


_STARTING, _FINISHED = "starting", "finished"
_phase = _STARTING
_late_signal = 0


def _on_signal(signum, frame) -> None:
  """SIGINT/SIGTERM outside the trainer's own handling (which saves a checkpoint).

  Before the trainer starts nothing is written: leave at once. After it returned
  (completed, interrupted or refused) the outcome stands: note the signal and
  let the exit status and line be the outcome's.
  """
  del frame
  global _late_signal
  if _phase == _STARTING:
    os.write(2, b"dfax.train: interrupted during start-up; nothing was written.\n")
    os._exit(interrupt_exit_code(signum))
  _late_signal = signum


def _finished() -> None:
  global _phase
  _phase = _FINISHED


def main(argv) -> None:
  for sig in (signal.SIGINT, signal.SIGTERM):
    try:
      signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: the caller keeps the signals
      pass
  if len(argv) > 1:
    _fail(f"dfax.train: unexpected arguments {argv[1:]}; all options are --flags.",
          EXIT_REFUSED)
  if not _WORKDIR.value.strip():
    _fail("dfax.train: --workdir is empty (an unset shell variable?); name the run's "
          "directory, e.g. --workdir=/tmp/run.", EXIT_REFUSED)
  quiet_logging()
  manual = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in manual) and not _MULTIHOST.value:
    _fail("dfax.train: --coordinator_address, --num_processes and --process_id need "
          "--multihost.", EXIT_REFUSED)
  if _MULTIHOST.value:
    try:
      distributed.initialize(*manual)
    except ConfigError as e:
      _fail(str(e), EXIT_REFUSED)
  config = _load_config()
  try:
    skips = [int(s) for s in _SKIP.value]
  except ValueError:
    _fail(f"dfax.train: --skip_batches={','.join(_SKIP.value)} must be step numbers, e.g. "
          "--skip_batches=17,18.", EXIT_REFUSED)
  try:
    results = train_and_evaluate(config, _WORKDIR.value, allow_changes=_ALLOW.value,
                                 skip_batches=skips, restart=_RESTART.value)
  except RunError as e:
    _finished()
    _fail(str(e), e.exit_code)
  except DataUnavailableError as e:
    _finished()
    _fail(str(e), EXIT_REFUSED)
  _finished()
  if not distributed.is_primary():  # process 0 speaks for the run
    sys.exit(interrupt_exit_code(results["signal"]) if results["status"] == "interrupted"
             else EXIT_OK)
  if results["status"] == "interrupted" and results.get("started") is False:
    _fail("dfax.train: interrupted during start-up; nothing was written.",
          interrupt_exit_code(results["signal"]))
  if results["status"] == "interrupted":
    print(f"interrupted: {results.get('steps', 0)} steps done, checkpoint saved in "
          f"{_WORKDIR.value}; rerun the same command to resume.", file=sys.stderr)
    sys.exit(interrupt_exit_code(results["signal"]))
  if _late_signal:
    print(f"dfax.train: signal {_late_signal} came after the run completed; it was already "
          "complete and nothing was lost.", file=sys.stderr)
  prefix = "already completed" if results.get("already_completed") else results["status"]
  split, accuracy, _ = metrics.final_eval(results)  # test, or val for a validation split
  print(f"{prefix}: {results['method']} {results['name']} "
        f"{split} accuracy {100 * accuracy:.2f}% after {results['steps']} steps "
        f"({results['wall_time_s']:.0f} s)")
  sys.exit(EXIT_OK)
