"""golf's tests: python -m pytest -q tests (all), python -m pytest -q -m "not slow" tests (the quick ones)."""
