"""Op definitions, one module per family. Importing this package registers them all."""
from . import common, elementwise, nn, reduce, shape  # noqa: F401
