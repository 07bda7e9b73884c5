"""Thin Ray wrappers around moltbot's pure logic: one module per actor kind.

Importing this package first pins Ray to loopback and turns off usage stats (both read by Ray
at import time), unless the environment already says otherwise (a home-lab cluster does).
"""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray 2.60 turns token auth on for a head; a driver joining it must say so to send the token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Ray keeps the last 100k task attempts in the GCS for the dashboard's task list (~500 bytes
# each: the GCS grows by tens of MB over the first hours of a gateway's life, measured by the
# soak benchmark); the last 10k are plenty to look at and keep it small.
os.environ.setdefault("RAY_task_events_max_num_task_in_gcs", "10000")
# Ray starts one idle Python worker per CPU when a node starts and when the first driver
# connects, for tasks to reuse. The tree runs no tasks, and its actors carry a runtime_env (their
# environment variables) that such a worker does not have, so they never used one: two idle
# workers on this 2-core machine held 81 MB between them for nothing. Workers start on demand.
os.environ.setdefault("RAY_enable_worker_prestart", "0")
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
# The GCS keeps every dead actor's record (its creation spec, the arguments included) for the
# dashboard, up to 100k of them: a child in a crash loop adds one per restart, for good. The
# last 1000 are plenty to look back at.
os.environ.setdefault("RAY_maximum_gcs_destroyed_actor_cached_count", "1000")
# Ray's raylet starts every worker process at nice 15 (for batch jobs, so that a cluster's own
# processes stay responsive), while the GCS, raylet and agents run at nice 0. The tree's actors
# are the service here: at 15 a channel answering a message got 36/1024 of a core against any
# busy Ray process, so an actor restart (GCS, raylet and agent work at nice 0) stalled the
# siblings' replies. They run at 0 like Ray's own processes; what is background work lowers
# itself (a restart's imports: actors.startup; a sandboxed command: tools.bash.nice).
os.environ.setdefault("RAY_worker_niceness", "0")
