"""One typed settings object, read from the environment once per execution environment."""

from __future__ import annotations

import json
import os
from functools import cached_property, lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    stage: str = "dev"
    # Either a libpq URL (local, tests) or an RDS-style Secrets Manager secret (deployed).
    database_url: str | None = None
    database_secret_arn: str | None = None
    db_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    max_messages_per_request: int = Field(default=500, ge=1, le=5000)
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)

    # webhooks: provider secrets live in one Secrets Manager JSON secret (WEBHOOK_SECRETS_JSON
    # holds the same JSON inline for local runs); see README "Webhooks"
    webhook_secrets_arn: str | None = None
    webhook_secrets_json: str | None = None
    # "<provider>:<account id>" -> org_id, e.g. {"hubspot:5799819": "acme"}; Salesforce ids listed
    # here are also the OrganizationId allow-list
    provider_orgs_json: str = "{}"
    attribution_window_days: int = Field(default=90, ge=1, le=365)
    reply_window_days: int = Field(default=30, ge=1, le=365)
    sendgrid_verify_signature: bool = True
    inbound_parse_domains: str = ""
    replies_queue_url: str | None = None
    calendly_tolerance_s: int = Field(default=180, ge=1)
    hubspot_tolerance_s: int = Field(default=300, ge=1)
    hubspot_allow_legacy_signatures: bool = False
    hubspot_webhook_url: str | None = None
    hubspot_won_stages: str = "closedwon"
    hubspot_lost_stages: str = "closedlost"
    hubspot_api_base: str = "https://api.hubapi.com"
    hubspot_outcome_property: str | None = None  # a deal property holding the outcome id, if you keep one
    pipedrive_api_base: str = "https://api.pipedrive.com"
    pipedrive_outcome_field: str | None = None
    salesforce_outcome_field: str = "Outcome_Id__c"
    salesforce_email_field: str = "Contact_Email__c"
    standard_webhooks_tolerance_s: int = Field(default=300, ge=1)
    http_timeout_s: float = Field(default=5.0, gt=0, le=30)

    # reply classifier: the LLM is used when a key is configured (OPENAI_API_KEY locally, or
    # `openai_api_key` in the provider secret); otherwise, and whenever it fails, the offline rules
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    classifier_model: str = "gpt-4o-mini"
    classifier_timeout_s: float = Field(default=20.0, gt=0, le=120)
    classifier_concurrency: int = Field(default=10, ge=1, le=50)
    classifier_max_retries: int = Field(default=3, ge=0, le=10)
    event_bus_name: str = "default"

    # weekly training (see README "Training"): OpenAI stops new fine-tuning jobs on 2027-01-06,
    # so Bedrock is the default provider
    training_bucket: str | None = None
    training_state_machine_arn: str | None = None
    finetune_provider: str = Field(default="bedrock", pattern="^(bedrock|openai)$")
    finetune_base_model: str | None = None
    finetune_method: str = Field(default="supervised", pattern="^(supervised|dpo)$")
    bedrock_role_arn: str | None = None
    azure_openai_endpoint: str | None = None
    azure_openai_api_version: str | None = None
    training_min_examples: int = Field(default=50, ge=10)
    training_validation_fraction: float = Field(default=0.1, ge=0, le=0.5)
    training_epochs: int = Field(default=3, ge=1, le=20)
    training_prices_json: str | None = None
    training_max_wait_s: int = Field(default=86_400, ge=60)
    # optional second redaction pass with Amazon Comprehend DetectPiiEntities (README "Dataset")
    dataset_comprehend_pii: bool = False
    dataset_comprehend_language: str = Field(default="en", pattern="^(en|es)$")
    dataset_comprehend_min_score: float = Field(default=0.5, ge=0, le=1)
    # USD per 100-character unit (3 units minimum a request), https://aws.amazon.com/comprehend/pricing/
    dataset_comprehend_usd_per_unit: float = Field(default=0.0001, ge=0)
    # processes that build the examples (0: one per CPU the function may use, see
    # services.dataset.build_workers)
    dataset_build_workers: int = Field(default=0, ge=0, le=64)
    # the build refuses to start (and stops) when it cannot finish in the invocation's time:
    # CPU seconds one worker spends on an outcome (bench/export.py measures ~0.9 ms on a 2-core
    # x86 host; 1.5 ms leaves room for slower vCPUs), and the time kept for the upload after it
    dataset_build_seconds_per_row: float = Field(default=0.0015, gt=0)
    dataset_upload_margin_s: float = Field(default=90, ge=0)

    # retention (see README "Scale"): an outcome is final once its longest outcome window has
    # closed after sending; raw provider payloads are kept this many days longer, then removed in
    # batches by RetentionFunction (the normalised events and the derived columns stay)
    outcome_final_days: int = Field(default=90, ge=1, le=3650)
    raw_event_retention_days: int = Field(default=30, ge=0, le=3650)
    retention_batch_size: int = Field(default=5000, ge=1, le=100_000)

    @property
    def base_model(self) -> str:
        return self.base_model_for(self.finetune_provider)

    def base_model_for(self, provider: str) -> str:
        """The configured base model for the configured provider, else the provider's default."""
        if self.finetune_base_model and provider == self.finetune_provider:
            return self.finetune_base_model
        return "amazon.nova-micro-v1:0:128k" if provider == "bedrock" else "gpt-4.1-mini-2025-04-14"

    def provider_org(self, provider: str, account: object) -> str | None:
        return self.provider_orgs.get(f"{provider}:{account}")

    @cached_property
    def provider_orgs(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in json.loads(self.provider_orgs_json or "{}").items()}

    @staticmethod
    def split(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper()) not in (None, "")
        }
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and the local runner change the environment)."""
    get_settings.cache_clear()
