-- Tessera CA store, version 2 (PostgreSQL): the state of `ca serve` (RFC 8555 ACME, leases, the
-- published CRL). Kept in step with ../sqlite/0002_acme.sql: the same tables, columns and
-- indexes; only the type names differ. Every row belongs to one CA (issuer), like certificates.
-- Statuses are RFC 8555 §7.1.6's words; times are Unix seconds.
CREATE TABLE acme_accounts (
    issuer      TEXT NOT NULL REFERENCES issuers (issuer),
    id          TEXT NOT NULL,
    thumbprint  TEXT NOT NULL,           -- RFC 7638 SHA-256 JWK thumbprint, base64url
    jwk         TEXT NOT NULL,           -- the account key as the client sent it (JSON)
    contact     TEXT NOT NULL,           -- JSON array of URLs
    status      TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
    created     BIGINT NOT NULL,
    PRIMARY KEY (issuer, id),
    UNIQUE (issuer, thumbprint)
);

CREATE TABLE acme_orders (
    issuer            TEXT NOT NULL REFERENCES issuers (issuer),
    id                TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'processing', 'valid', 'invalid')),
    identifiers       TEXT NOT NULL,     -- JSON array of {"type", "value"}
    authorizations    TEXT NOT NULL,     -- JSON array of authorization ids, in the same order
    expires           BIGINT NOT NULL,
    not_before        BIGINT,
    not_after         BIGINT,
    error             TEXT,              -- RFC 7807 problem document (JSON)
    certificate       TEXT,              -- serial of the issued certificate (lowercase hex)
    replaces          TEXT,              -- RFC 9773 certificate identifier
    created           BIGINT NOT NULL,
    processing_since  BIGINT,            -- when finalization claimed it
    PRIMARY KEY (issuer, id),
    FOREIGN KEY (issuer, account_id) REFERENCES acme_accounts (issuer, id)
);

CREATE TABLE acme_authorizations (
    issuer      TEXT NOT NULL REFERENCES issuers (issuer),
    id          TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,           -- identifier type: dns, ip
    value       TEXT NOT NULL,
    wildcard    BOOLEAN NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated', 'expired', 'revoked')),
    expires     BIGINT NOT NULL,
    PRIMARY KEY (issuer, id),
    FOREIGN KEY (issuer, order_id) REFERENCES acme_orders (issuer, id)
);

CREATE TABLE acme_challenges (
    issuer            TEXT NOT NULL REFERENCES issuers (issuer),
    id                TEXT NOT NULL,
    authorization_id  TEXT NOT NULL,
    ordinal           BIGINT NOT NULL,   -- its place among its authorization's challenges
    kind              TEXT NOT NULL,     -- http-01, tls-alpn-01
    token             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'valid', 'invalid')),
    validated         BIGINT,
    error             TEXT,              -- RFC 7807 problem document (JSON)
    PRIMARY KEY (issuer, id),
    FOREIGN KEY (issuer, authorization_id) REFERENCES acme_authorizations (issuer, id)
);

CREATE TABLE acme_nonces (
    issuer   TEXT NOT NULL REFERENCES issuers (issuer),
    nonce    TEXT NOT NULL,
    expires  BIGINT NOT NULL,
    PRIMARY KEY (issuer, nonce)
);

CREATE TABLE acme_leases (
    issuer      TEXT NOT NULL REFERENCES issuers (issuer),
    name        TEXT NOT NULL,           -- the periodic work: crl, expire
    holder      TEXT NOT NULL,
    token       BIGINT NOT NULL,     -- fencing token: one higher with every grant
    good_until  BIGINT NOT NULL,
    PRIMARY KEY (issuer, name)
);

CREATE TABLE published_crls (
    issuer       TEXT PRIMARY KEY REFERENCES issuers (issuer),
    number       BIGINT NOT NULL,        -- the highest CRL number published
    der          BYTEA NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL
);

-- Orders by account (its orders list, §7.1.2.1; the foreign key's checks) and by certificate
-- (ARI, revocation), authorizations by order, challenges by authorization, and what the
-- periodic clean-up looks for (partial: only live rows).
CREATE INDEX acme_orders_account ON acme_orders (issuer, account_id);
CREATE INDEX acme_orders_certificate ON acme_orders (issuer, certificate) WHERE certificate IS NOT NULL;
CREATE INDEX acme_orders_expiry ON acme_orders (issuer, expires) WHERE status IN ('pending', 'ready');
CREATE INDEX acme_orders_processing ON acme_orders (issuer, processing_since) WHERE status = 'processing';
CREATE INDEX acme_authorizations_order ON acme_authorizations (issuer, order_id);
CREATE INDEX acme_authorizations_expiry ON acme_authorizations (issuer, expires) WHERE status = 'pending';
CREATE INDEX acme_challenges_authorization ON acme_challenges (issuer, authorization_id, ordinal);
CREATE INDEX acme_nonces_expiry ON acme_nonces (issuer, expires);
