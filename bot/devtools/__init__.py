"""Sandbox Cloudflare, fault injection, synthetic and demo accounts, the shell: not for production."""
