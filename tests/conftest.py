"""Settings shared by every test.

Property tests are deterministic (the guide's rule: a seed, never chance): Hypothesis draws
its examples from a seed derived from each test's name (``derandomize``), no example
database carries failures from one run into the next, and no example fails for taking long
on a busy machine (no deadline). So a run on a clean clone draws exactly what a run here
drew. To explore new examples locally, run pytest with ``--hypothesis-profile=explore``.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")
