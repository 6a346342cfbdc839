//! Weft observability.
