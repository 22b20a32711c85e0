"""Rules and plain data: no I/O (no Redis, HTTP, Slack or Cloudflare)."""
