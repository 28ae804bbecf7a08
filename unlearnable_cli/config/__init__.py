"""Every option, default and preset in one place (this package): the noise engine's, ``protect``'s,
``train-generator``'s and ``eval``'s.

Radii and step sizes are stored in [0, 1] pixel units everywhere inside; the command
line takes them in pixel levels out of 255 (``--radius 8`` means 8/255) and converts
with :func:`from_levels`.  Command-line options default to ``None``, meaning "the default
here".
"""


from .common import (ADV_RADIUS, ADV_STEP_SIZE, EOT_SAMPLES, MAX_PIXELS, RADIUS, STEP_SIZE, Budget, ConfigError, Device,
                     Interrupted, Method, NoiseConfig, OutputFormat, Perturbation, TransformSpec, VictimRuns,
                     from_levels, resolve_device)
from .evaluate import EVAL_PRESETS, Attacker, EvalConfig, RecognizerConfig, VictimConfig, eval_config, named_folders, victim_config
from .protect import ProtectConfig, protect_config
from .train import DEFENDED_EVAL_IMAGES, EVAL_PGD, PRESETS, Preset, ScoreConfig, TrainConfig, train_config

__all__ = ["Attacker", "RecognizerConfig", "ADV_RADIUS", "ADV_STEP_SIZE", "EOT_SAMPLES", "MAX_PIXELS", "Budget", "OutputFormat", "TransformSpec", "EVAL_PRESETS", "DEFENDED_EVAL_IMAGES", "EVAL_PGD", "PRESETS", "ScoreConfig", "RADIUS", "STEP_SIZE",
           "ConfigError", "Device", "Interrupted", "EvalConfig", "Method", "NoiseConfig", "Perturbation", "Preset", "ProtectConfig",
           "TrainConfig", "VictimConfig", "VictimRuns", "eval_config", "from_levels", "named_folders",
           "protect_config", "resolve_device", "train_config", "victim_config"]
