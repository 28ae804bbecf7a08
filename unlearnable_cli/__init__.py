"""unlearnable: protect your own images against unauthorized use as training data.

Modules by pipeline step (docs/design.md has the same map with the layering):

- commands: ``cli`` (Typer), ``console`` (error lines, exit codes, help format)
- settings: ``config`` (a package: every option, default and preset)
- engine: ``noise`` (SEM / REM / EM / TUE noise), ``attacks`` (PGD), ``transforms`` (random t),
  ``score`` (TUE's score estimator), ``classwise`` (class-wise EM patterns)
- models and weights: ``models`` (registry), ``weights`` (safetensors + card, shipped names)
- protect: ``protect`` (the job), ``scan`` (read every input once), ``protector`` (one
  batch's noise and the exact bound), ``folders`` (inputs, outputs, names), ``labels``,
  ``manifest`` (record and resume rules), ``budget`` (per-pixel bound), ``preview``,
  ``summary`` (plain-words output)
- train-generator: ``train`` (the loop), ``checkpoints`` (checkpoint, log, refusal rules)
- eval: ``evaluate`` (scenarios, entry point), ``victims`` (one victim), ``defenses``,
  ``report`` (table, warnings, plot), ``journal`` (resume)
- several processes: ``distributed`` (torchrun ranks, ``--shard K/N``)
- shared: ``data`` (image folders in memory, folder pairs, data digest), ``imageio``,
  ``metrics`` (PSNR, SSIM, accuracy, intervals), ``atomic`` (atomic writes), ``seeding``
"""

__version__ = "0.1.0"
