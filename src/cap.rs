//! Alerts as OASIS CAP 1.2 documents.
