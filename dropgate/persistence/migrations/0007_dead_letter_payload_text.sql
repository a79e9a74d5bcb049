-- A dead letter must be storable whatever its payload: jsonb refuses some JSON
-- (a \u0000 in a string), and then the event could not leave its partition.
ALTER TABLE dg_dead_letters ALTER COLUMN payload TYPE text USING payload::text;
