"""Test support shared by tests and bench: servers, fakes, signing, the contract validator."""
