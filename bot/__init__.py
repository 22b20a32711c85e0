"""seatbot: remove a person's Cloudflare Zero Trust seat from Slack, safely."""

__version__ = "0.1.0"
USER_AGENT = f"seatbot/{__version__}"
