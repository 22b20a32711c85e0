"""Use cases: what the bot does, in plain async code that knows nothing of Slack."""
