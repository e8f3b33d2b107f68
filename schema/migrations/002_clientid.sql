-- NFSv4 client identifiers per network namespace, so that a container that is moved or restarted
-- presents the same identity and can reclaim its open and lock state (DESIGN.md, "State").
-- updated: milliseconds since the epoch.
CREATE TABLE clientid (
  netns_key  TEXT    NOT NULL PRIMARY KEY,
  identifier TEXT    NOT NULL,
  source     TEXT    NOT NULL,
  updated    INTEGER NOT NULL
);
