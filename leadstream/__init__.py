"""leadstream: real-time marketing automation on Bytewax.

Importing the package puts the compiled hot modules in place when a matching build
exists (see leadstream/native.py); otherwise everything runs as the Python sources.
"""

from . import native as _native

_native.activate()
