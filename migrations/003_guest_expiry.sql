-- 003_guest_expiry: the jobs process deletes guest accounts that never ordered, oldest first
-- (src/auth/guest-expiry.ts). This index keeps that scan to the guests alone.
CREATE INDEX users_guest_created_at_idx ON users (created_at) WHERE is_guest;
