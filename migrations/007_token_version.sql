-- 007_token_version: sessions that can end. A token carries the token_version of its user at the time it
-- was signed (claim `ver`, absent = 0); logging out or changing the password raises the row's version, and
-- every token signed before no longer matches. The API reads the row through each worker's cache of
-- users (src/auth/known-users.ts), which every worker evicts when the row changes.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0 CHECK (token_version >= 0);
