"""``chatbridge bench``: the bridge under load, measured end to end on loopback.

Modules:

* ``suite`` — what runs: the full suite, ``--quick``, one scenario; the exit code.
* ``runner`` — one run: fresh database, start the stack, load, grace, count, stop.
* ``scenarios`` — the stacks by name (``chatwoot``; ``baseline`` and ``channel-capacity``
  as reference points), imported lazily; planned ones say they are not available yet.
* ``loadgen`` — open loop (``--rate``) and closed loop (``--max``) over aiohttp keep-alive
  connections, per-conversation order kept; ``ReplyFeed`` follows the replies.
* ``accounting`` — pure: lost / duplicated / out of order, percentiles, time series.
* ``processes`` — child processes (stopped even on Ctrl-C), CPU seconds and peak RSS.
* ``databases`` — a fresh SQLite file or PostgreSQL database per run.
* ``prefill`` — store a million messages of history quickly.
* ``channel`` — the mock Chatwoot process a run replies to; ``baseline`` — the no-op app.
* ``report`` — rich tables, JSON, matplotlib PNG.
"""
