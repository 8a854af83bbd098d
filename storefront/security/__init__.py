"""Security of the storefront API: staff accounts and roles, device request signatures,
the tamper-evident audit log and HTTP security headers."""
