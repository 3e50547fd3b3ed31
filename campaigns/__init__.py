"""Campaigns: targeting, decisions, experiments and conversions (content arrives with the campaign work)."""
