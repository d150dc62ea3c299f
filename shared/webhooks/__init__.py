"""Asynchronous scoring with webhook callbacks: jobs, the SSRF guard, Standard Webhooks signing, delivery."""
