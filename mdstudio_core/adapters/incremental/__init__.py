"""The SQL of a profile of a table whose binding declares `binding.incremental`: a full pass, or
an incremental one that reads only the rows at or above the watermark and merges them into the
table's state (`domain.incremental` says what is kept and why the merge is exact).

One pass, in one read-only repeatable-read transaction (one snapshot), runs:

1. *watermark*: the largest incremental value now (an index on the column answers it at once);
2. *safety net* (incremental only): the count, min and max of the incremental values of the
   settled rows (read from that index), which must equal the state's; on PostgreSQL the table's
   change counters (`pg_stat_user_tables`: rows updated or deleted, read before the snapshot)
   and its file (a TRUNCATE or rewrite replaces it) must be unchanged; where those counters are
   missing (SQLite, views, `track_counts` off) a checksum of the settled rows' bound columns
   must be. Any difference makes the pass full, saying why;
3. *row pass*: one aggregate (parallel on PostgreSQL) with, per part (the new rows below the
   new watermark, the new frontier at it, and for a daily table the settled rows of the
   watermark's day, read again) and per day where the binding is daily: row count, non-null,
   valid, min and max of every bound column;
4. *distinct* of each column declared `unique` (others need none: uniqueness is the only
   dimension that reads it): the new values, and how many already occur among the settled
   rows, found by a probe that uses an index on the column when there is one, else a scan of
   the settled rows; none when the new values lie outside the settled values' range;
5. *days*: distinct values per day of the `unique` columns.

The package: `measure` (the transaction and the pass), `probes` (whether it may be
incremental), `passes` (its statements), `expressions` and `shape` (what they are built of).
"""

from mdstudio_core.adapters.incremental.measure import measure_incremental
from mdstudio_core.adapters.incremental.shape import Increment, signature

__all__ = ["Increment", "measure_incremental", "signature"]
