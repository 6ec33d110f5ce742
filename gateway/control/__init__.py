"""The control plane: HTTP API on the Unix socket (and optional TCP), metrics, dashboard."""

from gateway.control.auth import check_token
from gateway.control.server import ControlServer
from gateway.control.socketfile import AlreadyRunning

__all__ = ["AlreadyRunning", "ControlServer", "check_token"]
