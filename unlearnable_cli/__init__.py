"""unlearnable: protect your own images against unauthorized use as training data.

Subpackages by pipeline step (docs/design.md has the same map with the layering):
``commands`` (the command line), ``config`` (every option, default and preset),
``engine`` (noise, PGD, transforms, the per-pixel bound, seeds), ``methods`` (one class
per method: SEM, REM, EM, class-wise EM, TUE), ``models`` (architectures, generator
files), ``protect``, ``train``, ``evaluate`` (the three jobs), ``io`` (images, atomic
writes, data sets); ``distributed`` (several processes) and ``metrics`` are shared.
"""

__version__ = "0.1.0"
