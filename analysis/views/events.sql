-- view: events
-- Lifecycle and metadata events of every attempt, as written (payload is JSON text).
SELECT * FROM raw_events
