-- The resolver's cache: one row per (scope, lookup kind, query). See src/cache/store.ts.
-- value NULL is a negative answer (cached "not found"), distinct from a missing row.
-- Times are milliseconds since the epoch; the store never reads a clock.
CREATE TABLE cache (
  key     TEXT    NOT NULL PRIMARY KEY,
  scope   TEXT    NOT NULL,
  value   TEXT,
  source  TEXT    NOT NULL,
  stored  INTEGER NOT NULL,
  expires INTEGER NOT NULL
);

-- `idmapctl cache flush --scope S` and listing by scope.
CREATE INDEX cache_scope ON cache (scope, key);
