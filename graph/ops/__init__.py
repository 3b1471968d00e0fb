"""Op definitions, one module per family. Importing this package registers them all."""
from . import attention, common, elementwise, loss, misc, nn, quant, reduce, shape  # noqa: F401
