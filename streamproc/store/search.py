"""Reading the store: ranked full-text search (FTS5, bm25), summaries, and entries by time.

Each `StoreReader` holds its own read-only connection; WAL lets readers run beside the writer.
Queries use FTS5's syntax: words (all must match), "a phrase", prefix*, OR, NOT, NEAR(a b).

Speed: a time filter is turned into a rowid range first (from `entry_hours`), and FTS5
reads only that part of each word's doclist; the exact time filter is then applied to the join.
Rowids grow with insertion, which follows time closely, so the range is tight.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import UsageError
from .db import StoreError, connect

MARK_START, MARK_END = "\x02", "\x03"  # snippet() highlight markers, replaced by each output format


class QueryError(UsageError):
    """The search query is not valid FTS5 syntax (exit 2; fix the query, do not retry)."""


@dataclass
class Hit:
    event_id: str
    kind: str
    source: str
    start: float
    end: float
    media_start: Optional[float]
    media_end: Optional[float]
    text: str
    snippet: str  # highlighted with MARK_START / MARK_END
    score: float  # bm25: lower is better
    verdicts: dict[str, str] = field(default_factory=dict)
    snapshot: Optional[str] = None

    def snippet_marked(self, start: str = "[", end: str = "]") -> str:
        return self.snippet.replace(MARK_START, start).replace(MARK_END, end)

    def snippet_html(self) -> str:
        import html

        escaped = html.escape(self.snippet, quote=False)
        return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


_probes = threading.local()


def check_query(query: str) -> None:
    """QueryError if FTS5 rejects `query`. It is tried on an empty in-memory index with the same
    tokenizer, so any error there is the query's (the messages vary: syntax error, unterminated
    string, no such column...), and an error on the real store is the store's. One probe per
    thread, kept (making it costs a millisecond; using it, microseconds)."""
    from .schema import TOKENIZE

    probe = getattr(_probes, "conn", None)
    if probe is None:
        probe = sqlite3.connect(":memory:")
        probe.execute(f"CREATE VIRTUAL TABLE probe USING fts5 (text, tokenize='{TOKENIZE}')")
        _probes.conn = probe
    try:
        probe.execute("SELECT rowid FROM probe WHERE probe MATCH ?", (query,)).fetchall()
    except sqlite3.Error as error:
        raise QueryError(
            f"the search query {query!r} is not valid ({error}); quote a phrase as \"a b\", "
            "a prefix as word*, and combine words with AND, OR, NOT"
        ) from None


class StoreReader:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"no caption store at {self.path} (is store.enabled set, and the path right?)",
                             retryable=False)
        try:
            self.conn = connect(self.path, readonly=True)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the caption store at {self.path}: {error}", retryable=False) from None
        from .schema import VERSION

        if version != VERSION:
            raise StoreError(
                f"the caption store at {self.path} has schema version {version}, this streamproc reads {VERSION}: "
                "start the service once to migrate it", retryable=False,
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def search(
        self,
        query: str,
        *,
        sources: Sequence[str] = (),
        since: Optional[float] = None,
        until: Optional[float] = None,
        kinds: Sequence[str] = (),
        limit: int = 20,
    ) -> list[Hit]:
        """Entries matching `query`, best first (bm25), that start within [since, until]."""
        if not query.strip():
            raise QueryError("the search query is empty")
        where = ["entries_fts MATCH :query"]
        args: dict[str, Any] = {"query": query, "limit": max(1, int(limit))}
        if since is not None or until is not None:
            with self._reading("searching"):
                lo, hi = self._hour_range(since, until)
            if lo is None:
                return []
            where.append("entries_fts.rowid BETWEEN :lo AND :hi")
            args.update(lo=lo, hi=hi)
        if since is not None:
            where.append("e.start_ts >= :since")
            args["since"] = since
        if until is not None:
            where.append("e.start_ts <= :until")
            args["until"] = until
        for name, values in (("source", sources), ("kind", kinds)):
            if values:
                keys = [f"{name}{i}" for i in range(len(values))]
                where.append(f"e.{name} IN ({', '.join(':' + k for k in keys)})")
                args.update(zip(keys, values))
        # bm25() as a plain column, not FTS5's `ORDER BY rank`: FTS5 sorts by rank in a sub-query of
        # its own that drops the rowid range, so the whole index would be ranked (10x slower at 1M rows).
        # Snippets are made afterwards for the rows kept only.
        ranked = (
            "SELECT e.id, bm25(entries_fts) AS score FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid "
            f"WHERE {' AND '.join(where)} ORDER BY score LIMIT :limit"
        )
        details = (
            "SELECT e.id, e.event_id, e.kind, e.source, e.start_ts, e.end_ts, e.media_start, e.media_end, e.text, "
            f"snippet(entries_fts, 0, '{MARK_START}', '{MARK_END}', '…', 16), e.verdicts, e.snapshot "
            "FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid "
            "WHERE entries_fts MATCH :query AND entries_fts.rowid IN (SELECT value FROM json_each(:ids))"
        )
        check_query(query)
        hits = []
        with self._reading("searching"):
            scores = dict(self.conn.execute(ranked, args).fetchall())
            rows = self.conn.execute(details, {"query": query, "ids": json.dumps(list(scores))}).fetchall()
            for r in rows:  # a row deleted by retention between the two queries is simply missing
                hits.append(Hit(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], scores[r[0]],
                                json.loads(r[10]) if r[10] else {}, r[11]))
        hits.sort(key=lambda hit: hit.score)
        return hits

    def entries(
        self, *, since: float, until: float, sources: Sequence[str] = (), kinds: Sequence[str] = ("caption", "alert")
    ) -> list[dict[str, Any]]:
        """Entries that start within [since, until] in time order (what a summary reads)."""
        where = ["start_ts >= ?", "start_ts <= ?"]
        args: list[Any] = [since, until]
        if sources:
            where.append(f"source IN ({', '.join('?' * len(sources))})")
            args += list(sources)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += list(kinds)
        with self._reading("reading"):
            rows = self.conn.execute(
                "SELECT event_id, kind, source, start_ts, end_ts, text FROM entries "
                f"WHERE {' AND '.join(where)} ORDER BY start_ts, id",
                args,
            ).fetchall()
        keys = ("event_id", "kind", "source", "start", "end", "text")
        return [dict(zip(keys, row)) for row in rows]

    def summaries(self, *, sources: Sequence[str] = (), limit: int = 20) -> list[dict[str, Any]]:
        """The newest stored summaries first."""
        where, args = "", []
        if sources:
            where = f"WHERE source IN ({', '.join('?' * len(sources))})"
            args = list(sources)
        with self._reading("reading summaries from"):
            rows = self.conn.execute(
                f"SELECT data FROM summaries {where} ORDER BY end_ts DESC, id DESC LIMIT ?", (*args, max(1, int(limit)))
            ).fetchall()
            return [json.loads(row[0]) for row in rows]

    def recent(
        self, source: str, *, limit: int = 100, kinds: Sequence[str] = ("caption", "alert", "unchanged")
    ) -> list[dict[str, Any]]:
        """The newest entries of `source` as their events were stored (the web view's timeline)."""
        with self._reading("reading"):
            rows = self.conn.execute(
                f"SELECT data FROM entries WHERE source = ? AND kind IN ({', '.join('?' * len(kinds))}) "
                "ORDER BY start_ts DESC, id DESC LIMIT ?",
                (source, *kinds, max(1, int(limit))),
            ).fetchall()
            return [json.loads(row[0]) for row in rows]

    def count(self) -> int:
        with self._reading("reading"):
            return self.conn.execute("SELECT count(*) FROM entries").fetchone()[0]

    def _hour_range(self, since: Optional[float], until: Optional[float]) -> tuple[Optional[int], Optional[int]]:
        """The smallest and largest entry id starting in the hours of [since, until]."""
        return self.conn.execute(
            "SELECT min(min_id), max(max_id) FROM entry_hours WHERE hour BETWEEN :first AND :last",
            {"first": -(1 << 62) if since is None else int(since // 3600),
             "last": 1 << 62 if until is None else int(until // 3600)},
        ).fetchone()

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[None]:
        """SQLite's errors as one StoreError line: a corrupt page, a file that is not a database,
        a disk error. A busy or locked store may work on a retry; a corrupt one will not."""
        try:
            yield
        except sqlite3.OperationalError as error:
            raise StoreError(f"{doing} the caption store at {self.path} failed: {error}", retryable=True) from None
        except (sqlite3.DatabaseError, ValueError) as error:  # ValueError: a stored row's JSON is damaged
            raise StoreError(f"{doing} the caption store at {self.path} failed: {error} (the file is damaged: "
                             "restore it from a backup, or move it away and let the service start a new one)",
                             retryable=False) from None
