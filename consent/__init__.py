"""Consent ledger, data subject requests, erasure and audit (its content arrives with the privacy work)."""
