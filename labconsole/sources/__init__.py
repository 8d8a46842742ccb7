"""Power sources: one module per driver, a registry, and discovery."""
