"""Entry point of a measuring worker process: `python -m ember.tune.worker READ_FD WRITE_FD [HOOK]`."""
from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from .measure import serve

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
          sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None)
