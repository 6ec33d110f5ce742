"""Switchboard: a self-hosted chat gateway daemon (import name ``gateway``)."""

__version__ = "0.1.0"
