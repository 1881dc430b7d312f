-- Tessera CA store, version 1 (PostgreSQL). Kept in step with ../sqlite/0001_certificates.sql:
-- the same tables, columns and indexes; only the type names and the row id differ.
CREATE TABLE issuers (
    issuer      TEXT PRIMARY KEY,           -- SHA-256 fingerprint (hex) of the CA certificate
    crl_number  BIGINT  NOT NULL DEFAULT 0, -- the last CRL number handed out
    created_at  BIGINT  NOT NULL
);

CREATE TABLE certificates (
    id                 BIGSERIAL PRIMARY KEY, -- issuance order (newest first in `ca list`)
    issuer             TEXT NOT NULL REFERENCES issuers (issuer),
    serial             TEXT NOT NULL,        -- lowercase hex, canonical (see normalise_serial)
    subject            TEXT NOT NULL,
    sans               TEXT NOT NULL,        -- JSON array of `dns:…`, `ip:…`, …
    profile            TEXT NOT NULL,
    not_before         BIGINT NOT NULL,      -- Unix seconds
    not_after          BIGINT NOT NULL,
    issued_at          BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('good', 'revoked')),
    revoked_at         BIGINT,
    revocation_reason  TEXT,
    der                BYTEA NOT NULL,
    UNIQUE (issuer, serial),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
);

-- `ca list` (newest first, by status, by expiry) and CRL generation (the revoked set).
CREATE INDEX certificates_newest ON certificates (issuer, id DESC);
CREATE INDEX certificates_expiry ON certificates (issuer, not_after);
CREATE INDEX certificates_revoked ON certificates (issuer, serial) WHERE status = 'revoked';
