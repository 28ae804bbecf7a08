"""Acceptance targets the benchmark drivers report against, in one place.

Each is a limit an issue set; the drivers read them from here to say "met" or "missed"
beside the measured figure, so a changed target is one edit and a reader sees all of
them at once.  Ratios are protected-trained over clean-trained accuracy on clean test
images (lower protects more).
"""

from __future__ import annotations

#: efficacy.py, the shipped SEM generator on the CIFAR-10 subset (quick ConvNet, victim
#: seed 0): (label, method, adversarial radius in levels, largest ratio).
SEM_RATIOS = [("standard training", "sem", 0.0, 0.20),
              ("adversarial training at 4/255", "sem", 4.0, 0.55)]
#: efficacy.py: SEM must beat these methods at adversarial training 4/255.
SEM_BEATS = ("em", "rem")
#: efficacy.py, TUE against SEM over the victim architectures: at 4/255 TUE's mean ratio
#: below SEM's; under standard training at most this much above SEM's.
TUE_STANDARD_SLACK = 0.05
#: efficacy.py: fewer victim architectures than this are flagged as thin evidence.
TUE_MIN_VICTIMS = 3

#: faces.py, the personal folder: per person, protected / clean recognition at most this,
#: with the two 95% intervals apart.
PERSONAL_RATIO = 0.3

#: photos.py, visibility at ρ_u = 8: mean SSIM at least, low-frequency share at most.
PHOTO_SSIM = 0.95
PHOTO_LOW_SHARE = 0.25
#: photos.py / protect_speed.py: one 12-megapixel photo through `protect` on this CPU.
PHOTO_12MP_SECONDS = 20
PHOTO_12MP_EXTRA_GIB = 2
