-- photoclaim's tables on PostgreSQL, version 1.
--
-- Each table of the storage schema (src/store/schema.rs) is an ordered map
-- from byte keys to byte values, as in the sled backend: keys compare
-- bytewise (bytea), values are the exact encodings the hash chains seal
-- (protobuf records, 49-byte log entries). Everything lives in the schema
-- `photoclaim`, so that it never meets a database's other tables.
CREATE TABLE photoclaim.meta (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.claims (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.claims_by_state (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.responses (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.events (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.event_log (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.claims_by_sha256 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.claims_by_pdq (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.request_ids (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.api_keys (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.api_key_names (k bytea PRIMARY KEY, v bytea NOT NULL);
