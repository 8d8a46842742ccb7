"""Sample types, the live ring buffer, and the crash-safe sample streams (CSV, binary)."""
