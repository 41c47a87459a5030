"""Hypothesis settings for the whole suite.

Per-example deadlines are off everywhere: they measure the machine, not the code, and a fresh CI machine that is
slow for a moment must not fail a property that holds. The same goes for the health check that flags slow data
generation. Each test still chooses its own ``max_examples``; a failure prints the blob that reproduces it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("qrlogin", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("qrlogin")
