"""``chatbridge bench``: the bridge under load, measured end to end on loopback.

Modules:

* ``suite`` — what runs: the full suite, ``--quick``, one scenario; the exit code.
* ``runner`` — one run: fresh database, start the stack, load, grace, count, stop.
* ``scenarios`` — the stacks by name (``chatwoot``, ``webchat``, ``pull``, ``stream``,
  ``burst``;
  ``baseline`` and ``channel-capacity`` as reference points), imported lazily.
* ``widgets`` — the process holding N live widget sockets (webchat, stream); ``stream_agent``
  and ``pull_agent`` — the agents those scenarios run.
* ``loadgen`` — open loop (``--rate``) and closed loop (``--max``) over aiohttp keep-alive
  connections, per-conversation order kept; ``ReplyFeed`` follows the replies.
* ``accounting`` — pure: lost / duplicated / out of order, percentiles, time series.
* ``costs`` — what a message costs: bridge CPU, and the store's statements, transactions
  and server round trips read from each bridge's ``/metrics``, per reply.
* ``processes`` — child processes (stopped even on Ctrl-C), CPU seconds and peak RSS (also
  of the PostgreSQL backends serving the run, and of the whole machine).
* ``databases`` — a fresh SQLite file or PostgreSQL database per run.
* ``replicas`` — ``--replicas N``: N bridges on one database and Redis, what each one did;
  ``redis_server`` — the Redis they share (given, or a private ``redis-server`` per run).
* ``burst_runner`` — the ``burst`` scenario: customers typing bursts of fragments and
  waiting for the reply, without and with a route's debounce; ``burst_agent`` logs each turn
  (one model call), ``burst_accounting`` counts (pure), ``burst_report`` prints.
* ``prefill`` — store a million messages of history quickly.
* ``channel`` — the mock Chatwoot process a run replies to; ``baseline`` — the no-op app.
* ``report`` — rich tables, JSON, matplotlib PNG.
"""
