"""The job runner (saq on Redis), its status, and the periodic work it runs."""
