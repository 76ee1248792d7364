"""SQL, one module per table family; every value bound as a ``%(name)s`` parameter.

* :mod:`.ingestions`: ``raw_ingestions`` rows and statuses (discovery, claims, outcomes, verify,
  the monitor's and the weekly review's aggregates).
* :mod:`.metric_rows`: the metric tables (which keys exist; the merge that fills them).
* :mod:`.recovery_log`: who finished which ingestion (and the weekly review's recovery figures).
* :mod:`.cache`: the reconciliation cache.
* :mod:`.server`: the server's own state (WAL archiving: are backups current?).

The payload's own jsonb is expanded by :mod:`recovery_lib.payload.stored` and
:mod:`recovery_lib.payload.sql_plan`.
"""
