-- macros: failures
-- How the failed runs ended, defined once: `run_failed` explains the exception and
-- `memory_pressure` reads it for an out-of-memory failure.

-- failures(): one row per run whose latest attempt ended with run_failed (status
-- `failed`): the step of that event, the exception's type and its message ('' when
-- it has none); of several run_failed events, the latest attempt's last.
CREATE OR REPLACE MACRO failures() AS TABLE
    SELECT e.run_id, e.step,
           json_extract_string(e.payload, '$.type') AS type,
           coalesce(json_extract_string(e.payload, '$.message'), '') AS msg
    FROM events e JOIN runs r ON r.run_id = e.run_id AND r.status = 'failed'
    WHERE e.kind = 'run_failed'
    QUALIFY row_number() OVER (PARTITION BY e.run_id ORDER BY e.attempt DESC, e.seq DESC) = 1;
