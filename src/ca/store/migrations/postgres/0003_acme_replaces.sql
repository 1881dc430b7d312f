-- Tessera CA store, version 3: a certificate is replaced (RFC 9773 §5) by at most one order that
-- is not invalid, enforced by the store, so that two instances accepting newOrder requests that
-- replace the same certificate at the same moment accept one (the other: alreadyReplaced).
-- Kept in step between ../sqlite and ../postgres (the same SQL in both dialects).
--
-- A store written before this version may hold several live orders replacing one certificate:
-- all but the oldest forget what they replace, so that the index can be built.
UPDATE acme_orders SET replaces = NULL
WHERE replaces IS NOT NULL AND status <> 'invalid' AND EXISTS (
    SELECT 1 FROM acme_orders AS older
    WHERE older.issuer = acme_orders.issuer AND older.replaces = acme_orders.replaces
      AND older.status <> 'invalid' AND (older.created, older.id) < (acme_orders.created, acme_orders.id)
);

CREATE UNIQUE INDEX acme_orders_replaces ON acme_orders (issuer, replaces)
    WHERE replaces IS NOT NULL AND status <> 'invalid';
