"""Every state change of the profiles app: accepting events, resolving identities, enrichment."""
