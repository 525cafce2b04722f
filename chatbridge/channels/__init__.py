"""Channel adapters: one module per place where customers talk."""
