"""Start a real bridge for the TypeScript tests: ``python bridge.py``.

Binds a free port on 127.0.0.1, prints ``{"port": N}`` on one line, then becomes
``python -m chatbridge serve --fd <that socket>`` (the same process: stopping it stops the
bridge). Its configuration comes from the environment the test gives it
(``INBOX_AGENT_MAPPINGS``, ``CHATBRIDGE_DATABASE_URL``, …).
"""

from __future__ import annotations

import json
import os
import socket
import sys

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
listener.set_inheritable(True)
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
fd = str(listener.fileno())
os.execv(sys.executable, [sys.executable, "-m", "chatbridge", "serve", "--fd", fd])
