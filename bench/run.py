"""Run the benchmark from a checkout: ``python bench/run.py [chatwoot] [--quick] …``.

The same entry point as ``chatbridge bench`` (see ``chatbridge bench --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbridge.cli import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]])
