"""Scoring Azure ML online endpoints: resolution (cached), the pooled client, response shapes, teardown."""
