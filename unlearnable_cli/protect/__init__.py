"""``protect``: a folder of photos in, protected copies and a manifest out.

Stages, one module each: :mod:`.folders` (inputs, outputs, names) → :mod:`.scan` (read
every input once; :mod:`.labels` picks each image's class) → :mod:`.manifest` (record and
resume rules) → :mod:`.batches` and :mod:`.protector` (one batch's noise and the exact
bound) → :mod:`.summary` (plain words); :mod:`.job` runs them, :mod:`.preview` draws sheets.
"""
