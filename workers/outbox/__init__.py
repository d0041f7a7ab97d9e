"""The durable delivery outbox: every output of a succeeded job, times every destination that
takes it, is a row with a state, attempts, a next try and the last error. A runner thread sends
what is due through the adapters (C-STORE, STOW-RS, FHIR, the node's own facade, MLLP, the
priority webhook and FHIR Task) and retries transient failures with backoff over hours.

Modules: `config` (DeliveryConfig), `tables` (outputs, deliveries), `record` (rows written when
a job completes), `claims` (claiming and finishing rows), `adapters` (one per destination type),
`runner` (DeliveryRunner), `admin` (operator views and actions), `metrics`.
Nothing is imported here, so `workers.config` can import `workers.outbox.config` cheaply.
"""
