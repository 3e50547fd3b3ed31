"""Segments: the rule language, memberships and ML segments (content arrives with the segmentation work)."""
