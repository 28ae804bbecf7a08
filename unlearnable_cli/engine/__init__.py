"""The noise engine shared by ``protect`` and ``train-generator``: error-minimizing noise
(:mod:`.noise`), PGD (:mod:`.attacks`), the random transforms t (:mod:`.transforms`), the
per-pixel bound (:mod:`.budget`) and seeded random streams (:mod:`.seeding`)."""
