"""unlearnable: protect your own images against unauthorized use as training data.

The package is laid out by pipeline step:

- ``cli``        command layer (Typer), thin wrappers around the library functions
- ``config``     every option, default and preset, in one place
- ``models``     classifier registry (the surrogate "generator" and eval victims)
- ``weights``    safetensors weights with a metadata card, safe loading
- ``transforms`` differentiable, batched random resize/crop/flip used by the noise
- ``noise``      the error-minimizing noise engine (SEM, REM, EM)
- ``attacks``    PGD (maximizing) for adversarial training and robust evaluation
- ``imageio``    discovering, decoding and atomically writing images
- ``labels``     choosing a generator class for each protected image
- ``protect``    the ``protect`` job: folders in, protected PNGs and a manifest out
- ``data``       image-folder data sets held in memory as one uint8 tensor
- ``train``      generator training (SEM Algorithm 1, REM and EM baselines)
"""

__version__ = "0.1.0"
