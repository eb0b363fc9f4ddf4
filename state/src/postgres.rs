//! The PostgreSQL adapter (distributed mode). To be implemented.
