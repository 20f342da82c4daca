-- Version 2: imported fact-checks (external reviews). Same layout as the
-- tables of version 1 (src/store/schema.rs gives the keys and values).
CREATE TABLE photoclaim.external_reviews (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.external_reviews_by_url (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE photoclaim.review_log (k bytea PRIMARY KEY, v bytea NOT NULL);
