"""Consent writes, one module per topic: the ledger, the suppression list, data subject requests."""
