"""``kind = "echo"``: reply with the message's own text (media are named in a note)."""

from __future__ import annotations

from typing import Any

from gateway.inbound.messages import Reply


class EchoHandler:
    kind = "echo"

    async def handle(self, envelope: dict[str, Any], *, attempt: int) -> list[Reply]:
        message = envelope["message"]
        lines = [f"vote: {message['text']}" if envelope.get("type") == "poll_vote" else message["text"]]
        for media in message.get("media") or ():
            name = media.get("filename") or media.get("mime") or media["ref"]
            lines.append(f"[received {media['kind']}: {name}]")
        text = "\n".join(line for line in lines if line)
        return [Reply(text=text)] if text else []
