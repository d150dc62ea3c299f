"""Lifecycle: job completion → model registration → blue/green deployment, and the reconciler."""
