"""``train-generator``: the loop (:mod:`.loop`), one run's state (:mod:`.run`), checkpoints
and their refusal rules (:mod:`.checkpoints`), and the finished card (:mod:`.card`).
The method's own step lives in :mod:`unlearnable_cli.methods`."""

from .loop import Interrupted, train_generator

__all__ = ["Interrupted", "train_generator"]
