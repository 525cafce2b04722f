"""In-package fakes and simulators for tests, the demo and local development."""
