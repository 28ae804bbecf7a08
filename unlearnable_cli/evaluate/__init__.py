"""``eval``: train fresh victims on clean and protected copies and compare them.

:mod:`.scenarios` (the standard and personal scenarios, the entry point), :mod:`.victims`
(one victim), :mod:`.defenses` (countermeasures), :mod:`.report` (table, warnings, plot),
:mod:`.journal` (finished victims kept for resume).
"""
