"""Test-wide setup: run the compiled modules when a matching build exists, as `leadstream` does."""

import leadstream  # noqa: F401  (importing it puts the compiled modules in place; see leadstream/native.py)
