-- 002_registered_only_sales: a sale may be closed to guest accounts. A guest costs nothing to make, so a
-- per-user limit alone does not stop one person from buying a whole sale with many guests; a registered
-- account costs a password hash and a rate-limited signup (docs/security.md).
ALTER TABLE flash_sales ADD COLUMN registered_only boolean NOT NULL DEFAULT false;
