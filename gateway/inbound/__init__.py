"""Inbound: dedupe, access policy, the durable inbox, pairing and handler dispatch."""

from gateway.inbound.handlers import Handler, HandlerError
from gateway.inbound.inbox import Inbox, InboxEntry
from gateway.inbound.messages import Reply, from_envelope, parse_replies, to_envelope
from gateway.inbound.pairing import PairingRequest, PairingStore
from gateway.inbound.pipeline import InboundPipeline
from gateway.inbound.policy import Decision, evaluate

__all__ = [
    "Decision", "Handler", "HandlerError", "InboundPipeline", "Inbox", "InboxEntry", "PairingRequest",
    "PairingStore", "Reply", "evaluate", "from_envelope", "parse_replies", "to_envelope",
]
