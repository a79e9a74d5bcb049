-- The public return pages (/checkout/done?purchase_id=, /checkout/cancelled?purchase_id=)
-- are reached by a purchase id alone: the buyer's browser does not know the tenant.
-- Purchase ids are random and unique across tenants; this index finds one's tenant
-- without a scan.
CREATE INDEX IF NOT EXISTS offer_purchases_by_purchase_id ON offer_purchases (purchase_id);
