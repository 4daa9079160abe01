"""The caption store: what the cameras saw, kept in SQLite (WAL) with an FTS5 index.

- `schema.py`: tables and migrations (`PRAGMA user_version`);
- `db.py`: the writer (rows from events, batched inserts, retention by age and size);
- `search.py`: readers (ranked search, entries by time, summaries);
- `timeparse.py`: `30m`, `yesterday`, ISO times -> UTC epoch; timezone-aware output;
- `summarize.py`: map-reduce text summaries by a model backend;
- `scheduler.py`, `service.py`, `api.py`: scheduled summaries and the HTTP read API in the service.

The plug-in that feeds it is `streamproc.store.plugin` (its sink, `sink.py`). See docs/store.md.
"""
