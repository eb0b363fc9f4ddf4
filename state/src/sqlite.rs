//! The SQLite adapter (embedded mode). To be implemented.
