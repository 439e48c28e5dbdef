"""What the training progress bar shows, and the training throughput."""

from __future__ import annotations

# tqdm's own rate (it/s) would count evaluations and checkpoints: steps/s replaces it.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class Progress:
  """What the progress bar shows, and the training throughput.

  The bar's postfix holds the last logged training loss, the last
  evaluation's accuracy on its split (``test_acc``; ``val_loss`` for a
  language model, whose per-token accuracy says little) and the training
  steps per second. The throughput is timed over the train steps alone (data,
  step, loss), not the evaluations, alignment or checkpoints in between.

  Examples:
    >>> from tqdm import tqdm
    >>> with tqdm(total=10, disable=True) as bar:
    ...   progress = Progress(bar, "test", language_model=False, batch_size=32)
    ...   progress.timed(0.5); progress.timed(0.5)
    ...   rates = progress.throughput()
    ...   progress.trained(0.25); progress.evaluated({"test_loss": 0.3, "test_accuracy": 0.9})
    >>> rates
    {'steps_per_s': 2.0, 'examples_per_s': 64.0}
    >>> progress.postfix()
    {'loss': '0.2500', 'test_acc': '90.00%', 'steps/s': '2.00'}
  """

  def __init__(self, bar, split: str, language_model: bool, batch_size: int):
    self.bar, self.split, self.lm, self.batch_size = bar, split, language_model, batch_size
    self.seconds, self.steps = 0.0, 0
    self.fields: dict[str, str] = {}

  def timed(self, seconds: float) -> None:
    """One train step took ``seconds``."""
    self.seconds, self.steps = self.seconds + seconds, self.steps + 1

  def throughput(self) -> dict[str, float]:
    """Steps and examples per second over the steps timed since the last call."""
    if not self.steps or self.seconds <= 0:
      return {}
    rate = self.steps / self.seconds
    self.seconds, self.steps = 0.0, 0
    self.fields["steps/s"] = f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"
    return {"steps_per_s": rate, "examples_per_s": rate * self.batch_size}

  def trained(self, loss: float) -> None:
    self.fields["loss"] = f"{loss:.4f}"
    self._show()

  def evaluated(self, ev: dict[str, float]) -> None:
    if self.lm:
      self.fields[f"{self.split}_loss"] = f"{ev[f'{self.split}_loss']:.4f}"
    else:
      self.fields[f"{self.split}_acc"] = f"{100 * ev[f'{self.split}_accuracy']:.2f}%"
    self._show()

  def postfix(self) -> dict[str, str]:
    """The fields in a fixed order: loss, evaluation, steps/s."""
    order = ["loss", f"{self.split}_loss", f"{self.split}_acc", "steps/s"]
    return {k: self.fields[k] for k in order if k in self.fields}

  def _show(self) -> None:
    self.bar.set_postfix(self.postfix())
