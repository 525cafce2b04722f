"""Print the agent protocol's JSON Schema, as the Python models define it.

The same document the bridge serves at ``GET /api/protocol/schema.json``; ``generate.mjs``
writes it to ``schema/agent-protocol.json`` and turns it into ``src/types.ts``.
"""

from __future__ import annotations

import json
import sys

from chatbridge.protocol import protocol_json_schema

json.dump(protocol_json_schema(), sys.stdout, indent=2, ensure_ascii=False)
sys.stdout.write("\n")
