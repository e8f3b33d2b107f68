-- Where each NFSv4 client identifier was last found in force: written into its network namespace's
-- /sys/fs/nfs/net/nfs_client/identifier, or already there. A table of its own, so the clientid
-- table keeps its shape. `idmapctl clientid list` shows it; absent until the kernel has an NFS client.
-- applied: milliseconds since the epoch; netns: the namespace's inode at that time (this boot only).
-- Rows go with their clientid row (the store deletes both; foreign keys are not enabled).
CREATE TABLE clientid_applied (
  netns_key TEXT    NOT NULL PRIMARY KEY,
  applied   INTEGER NOT NULL,
  netns     INTEGER NOT NULL
);

-- Two namespaces must never present one identity: lookups by identifier guard every write.
CREATE INDEX clientid_identifier ON clientid (identifier);
