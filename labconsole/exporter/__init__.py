"""`labconsole export-metrics`: a profile's own sources as a Prometheus exporter."""
