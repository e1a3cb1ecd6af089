"""Amazon Comprehend DetectPiiEntities: the optional second pass of dataset redaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from flywheel.clients.aws import client
from flywheel.domain.redaction import Span, comprehend_units, pack_requests, unpack_entities
from flywheel.errors import DependencyUnavailable, InvalidInput


@dataclass
class ComprehendUsage:
    requests: int = 0
    characters: int = 0
    units: int = 0
    entities: dict[str, int] = field(default_factory=dict)


class ComprehendPii:
    """Finds PII in many texts with few DetectPiiEntities calls (texts packed up to 100 KB)."""

    def __init__(self, language: str = "en", min_score: float = 0.5) -> None:
        if language not in ("en", "es"):
            raise InvalidInput(f"Comprehend detects PII in English (en) or Spanish (es), not {language!r}")
        self.language, self.min_score = language, min_score
        self.usage = ComprehendUsage()

    def find(self, texts: Sequence[str]) -> list[list[Span]]:
        found: list[list[Span]] = [[] for _ in texts]
        for request_text, layout in pack_requests(texts):
            try:
                answer = client("comprehend").detect_pii_entities(Text=request_text, LanguageCode=self.language)
            except ClientError as exc:  # throttling and 5xx were already retried by the client
                code = exc.response.get("Error", {}).get("Code", "")
                raise DependencyUnavailable(f"Comprehend DetectPiiEntities failed: {code}") from exc
            except BotoCoreError as exc:
                raise DependencyUnavailable(f"Comprehend DetectPiiEntities failed: {exc}") from exc
            self.usage.requests += 1
            self.usage.characters += len(request_text)
            self.usage.units += comprehend_units(request_text)
            for index, span in unpack_entities(answer.get("Entities", []), layout, self.min_score):
                found[index].append(span)
                key = span.placeholder.strip("{}")
                self.usage.entities[key] = self.usage.entities.get(key, 0) + 1
        return found
