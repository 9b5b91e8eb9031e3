"""The owner's live policy as the agent holds it: statements signed by the core (Ed25519), each for one camera
reference, each with an expiry. The agent decides every start and every second of relaying with these alone, so a
core that asks for something the statement does not allow (a bug, or a compromise short of the signing key) is
refused, and a socket that stays down closes everything when the statements expire."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class StatementRejected(ValueError):
    """A statement whose signature, device or shape is wrong; it is ignored, never half-trusted."""


@dataclass
class Policy:
    public_key_b64: str
    device_id: str
    statements: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key_b64))

    def accept(self, text: str, signature_b64: str) -> dict[str, Any]:
        """Verify and keep a statement (a newer one replaces an older one for the same camera)."""
        try:
            self._key.verify(base64.b64decode(signature_b64), text.encode())
        except (InvalidSignature, ValueError) as exc:
            raise StatementRejected("the statement's signature does not verify with the core's key") from exc
        statement = json.loads(text)
        if not isinstance(statement, dict) or statement.get("v") != 1 or statement.get("device_id") != self.device_id:
            raise StatementRejected("the statement is not for this device")
        if statement.get("live") not in ("never", "emergency_only", "always"):
            raise StatementRejected("the statement names no known live mode")
        ref = str(statement.get("camera_ref"))
        current = self.statements.get(ref)
        if current is None or float(statement["issued_at"]) >= float(current["issued_at"]):
            self.statements[ref] = statement
        return statement

    def refusal(self, camera_ref: str, session: dict[str, Any], now: float) -> str | None:
        """Why this session may not relay now, or None while the owner's signed policy allows it."""
        statement = self.statements.get(camera_ref)
        if statement is None:
            return "no signed live policy for this camera"
        if float(statement["expires_at"]) <= now:
            return "the signed live policy expired (no word from the core)"
        if float(session.get("ends_at", 0)) <= now:
            return "the session reached its hard end"
        mode = statement["live"]
        if mode == "never":
            return "the owner's live policy for this camera is never"
        if mode == "always":
            return None
        wanted = session.get("emergency_id")
        for emergency in statement.get("emergencies", []):
            if wanted and emergency.get("id") == wanted and float(emergency.get("ends_at", 0)) > now:
                return None
        return "the owner allows live view only during an emergency, and the signed policy names no active one for it"
