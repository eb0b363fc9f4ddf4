//! The SQL outbox: the bus as tables `bus_heads`, `bus_log` and `bus_idempotency` of the state
//! database (SQLite in embedded mode, PostgreSQL when distributed). To be implemented.
