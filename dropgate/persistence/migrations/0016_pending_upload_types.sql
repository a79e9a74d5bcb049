-- A staged upload of several types commits one type at a time (#21): the types already
-- committed are live in Redis while the upload is still pending. Their rows must stay
-- when the rest of the upload is discarded (its server died between two commits, or
-- a later commit failed), show in lists, and be restored into the pool.
ALTER TABLE campaign_pending_uploads ADD COLUMN committed_types text[] NOT NULL DEFAULT '{}';
