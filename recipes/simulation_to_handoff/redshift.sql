-- Leads that finished a loan simulation in the seven days before the run date
-- but were never handed off to an agent. Redshift SQL: :run_date is bound as
-- a parameter by the workflow, never pasted into the text.
SELECT
    l.lead_id,
    l.name,
    NVL(l.email, 'unknown') AS email,
    l.phone,
    l.source,
    l.simulation_at,
    l.loan_amount::DECIMAL(12, 2) AS loan_amount,
    DATEDIFF(hour, l.simulation_at, :run_date::timestamp) AS hours_since_simulation
FROM leads AS l
WHERE l.simulation_at >= DATEADD(day, -7, :run_date::date)
  AND l.simulation_at < :run_date::date
  AND l.handoff_at IS NULL
  AND l.phone LIKE '+52%'
  AND NOT l.is_test
  AND l.created_at <= GETDATE()
ORDER BY l.simulation_at, l.lead_id
