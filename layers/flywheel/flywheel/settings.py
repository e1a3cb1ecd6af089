"""One typed settings object, read from the environment once per execution environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property, lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from flywheel.domain.callers import parse_caller_orgs
from flywheel.domain.inputs import IDENTIFIER, RepeatedKeys, json_noting_repeated_keys, strict_json
from flywheel.errors import FlywheelError
from flywheel.webhooks.signatures import sendgrid_key_id, sendgrid_public_key, standard_webhooks_key

# the providers whose accounts PROVIDER_ORGS_JSON maps (README "Webhooks": "<provider>:<account id>",
# "<provider>:*" a provider's default, "sendgrid_inbound:<parse domain>")
ORG_PROVIDERS = ("calendly", "hubspot", "pipedrive", "salesforce", "sendgrid", "sendgrid_inbound")

# The webhook credentials a customer's own provider account holds (its admin sees them: a Salesforce
# Outbound Message URL, a Pipedrive webhook's Basic auth, a Calendly subscription's signing key, a
# SendGrid account's verification key and Inbound Parse URL, an in-house system's secret). Each may be
# one value, or a JSON object org_id -> value (one per organisation): then the value that matched
# decides the organisation (README "Webhooks"). Name -> the provider whose ProviderOrgs accounts it
# speaks for (None: the in-house systems, which name no provider account). HubSpot's client secret is
# not here: it is the app's, legitimately shared by every portal the app is installed in.
ORG_CREDENTIALS: dict[str, str | None] = {
    "sendgrid_public_key": "sendgrid",
    "inbound_parse_token": "sendgrid_inbound",
    "calendly_signing_key": "calendly",
    "pipedrive_username": "pipedrive",
    "pipedrive_password": "pipedrive",
    "pipedrive_api_token": "pipedrive",
    "salesforce_token": "salesforce",
    "crm_webhook_secret": None,
}
# the credentials a request is matched against: two organisations may not share a value
_MATCHED = (
    "sendgrid_public_key",
    "inbound_parse_token",
    "calendly_signing_key",
    "salesforce_token",
    "crm_webhook_secret",
)
# The credentials a request is checked against may also be a list of values, all accepted while a
# credential is rotated (README "Rotating a webhook credential"): the new value first (what `flywheel
# sign` signs with), then the one it replaces; per organisation {"acme": ["<new>", "<old>"], ...}.
# Pipedrive's login is rotated as a pair (pipedrive_logins). The tokens we send to a CRM's API
# (pipedrive_api_token, hubspot_access_token) are one value: a list would not say which to send.
ROTATABLE = (*_MATCHED, "pipedrive_username", "pipedrive_password", "hubspot_client_secret")
# the app's credentials (HubSpot: one app for every portal it is installed in), never per organisation
_APP_CREDENTIALS = ("hubspot_client_secret", "hubspot_access_token")


class ConfigurationError(FlywheelError):
    """A setting of this function is invalid: an operator's problem, never the caller's. `problems`
    maps each invalid environment variable to the reason (never its value: some are secrets)."""

    code = "configuration_error"

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(sorted(problems.items()))
        super().__init__(f"invalid configuration: {', '.join(self.problems)}", settings=self.problems)

    def __str__(self) -> str:
        # what a function outside the API (queue, schedule) logs when it fails: names and reasons
        return "invalid configuration: " + "; ".join(f"{name}: {why}" for name, why in self.problems.items())

    @classmethod
    def from_validation(cls, exc: ValidationError) -> ConfigurationError:
        problems: dict[str, str] = {}
        for error in exc.errors(include_input=False, include_url=False):
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            problems.setdefault(name, error["msg"])
        return cls(problems)


class Settings(BaseModel):
    # validators are compiled at the first from_env(), not at import: a cold start that never reads
    # the settings (health, a refused request) does not pay for a ~100-field model
    model_config = ConfigDict(defer_build=True)

    stage: str = "dev"
    # Either a libpq URL (local, tests) or an RDS-style Secrets Manager secret (deployed).
    database_url: str | None = None
    database_secret_arn: str | None = None
    # An RDS-managed master secret holds only username/password: where to connect comes from the
    # stack (the proxy or cluster endpoint). Set, these win over host/port/dbname in the secret.
    database_host: str | None = None
    database_port: int | None = Field(default=None, ge=1, le=65535)
    database_name: str | None = None
    database_user: str | None = None
    # IAM database authentication through RDS Proxy: a 15-minute token instead of the password
    database_iam_auth: bool = False
    database_sslmode: str = Field(default="require", pattern="^(disable|allow|prefer|require|verify-ca|verify-full)$")
    db_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    # the server closes sessions idle this long (see dal.connection); unset: never
    db_idle_session_timeout_s: int | None = Field(default=None, ge=1, le=86_400)
    max_messages_per_request: int = Field(default=500, ge=1, le=5000)
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)

    # webhooks: provider secrets live in one Secrets Manager JSON secret (WEBHOOK_SECRETS_JSON
    # holds the same JSON inline for local runs); see README "Webhooks"
    webhook_secrets_arn: str | None = None
    webhook_secrets_json: str | None = None
    # the OpenAI key has its own secret ({"openai_api_key": ...}) so that only the functions that
    # call OpenAI can read it (OPENAI_API_KEY locally)
    openai_secret_arn: str | None = None
    # "<provider>:<account id>" -> org_id, e.g. {"hubspot:5799819": "acme"}; Salesforce ids listed
    # here are also the OrganizationId allow-list
    provider_orgs_json: str = "{}"
    # the same mapping kept in a Secrets Manager secret (up to 64 KB; the inline form shares Lambda's
    # 4 KB environment with every other variable), read by clients.secrets.provider_orgs (README "Webhooks")
    provider_orgs_arn: str | None = None
    # IAM principal -> the organisations it may pass as org_id on the API, e.g.
    # {"arn:aws:iam::123456789012:role/acme-sender": ["acme"], "arn:aws:iam::123456789012:role/ops": ["*"]}
    # (README "Tenancy"); unset or empty: every authenticated caller may pass any org_id
    api_caller_orgs_json: str = ""
    # the same mapping kept in a Secrets Manager secret (up to 64 KB; the inline form shares Lambda's
    # 4 KB environment with every other variable), read by clients.secrets.api_caller_orgs (README "Tenancy")
    api_caller_orgs_arn: str | None = None
    attribution_window_days: int = Field(default=90, ge=1, le=365)
    reply_window_days: int = Field(default=30, ge=1, le=365)
    sendgrid_verify_signature: bool = True
    # oldest signed SendGrid delivery accepted: SendGrid retries failures for 24 h, reusing the
    # timestamp, so the window never goes below 25 h (replays inside it are de-duplicated by sg_event_id)
    sendgrid_max_age_s: int = Field(default=26 * 3600, ge=25 * 3600, le=7 * 24 * 3600)
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
    # all CRM API calls of one webhook request together (retries included); see README "Timeouts"
    crm_budget_s: float = Field(default=15.0, gt=0, le=28)
    # AWS SDK calls (see clients.aws)
    aws_connect_timeout_s: float = Field(default=5, gt=0, le=60)
    aws_read_timeout_s: float = Field(default=60, gt=0, le=900)
    aws_max_attempts: int = Field(default=4, ge=1, le=10)

    # reply classifier (README "Reply classification"): CLASSIFIER_BACKEND picks the LLM --
    # auto: OpenAI when a key is configured (OPENAI_API_KEY, or `openai_api_key` in the provider
    # secret), else offline; openai; openai_compatible (CLASSIFIER_BASE_URL, optional
    # CLASSIFIER_API_KEY / `classifier_api_key` secret); bedrock (Converse, IAM role); offline.
    # Whatever the backend, a failure or an invalid answer falls back to the offline classifier.
    classifier_backend: str = Field(default="auto", pattern="^(auto|offline|openai|openai_compatible|bedrock)$")
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    classifier_model: str | None = None
    classifier_base_url: str | None = None
    classifier_api_key: str | None = None
    classifier_json_mode: str = Field(default="json_schema", pattern="^(json_schema|json_object)$")
    classifier_region: str | None = None  # Bedrock region, when not the function's own
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
    # how a Bedrock custom model is served: an on-demand custom model deployment (pay per token) or
    # provisioned throughput (model units, by the hour)
    bedrock_serving: str = Field(default="on_demand", pattern="^(on_demand|provisioned)$")
    bedrock_model_units: int = Field(default=1, ge=1, le=100)
    azure_openai_endpoint: str | None = None
    azure_openai_api_version: str | None = None
    training_min_examples: int = Field(default=50, ge=10)
    training_validation_fraction: float = Field(default=0.1, ge=0, le=0.5)
    training_epochs: int = Field(default=3, ge=1, le=20)
    training_prices_json: str | None = None
    # bounded: the training state machine's TimeoutSeconds (80 h) is above the longest run these allow
    training_max_wait_s: int = Field(default=86_400, ge=60, le=86_400)
    serving_max_wait_s: int = Field(default=3_600, ge=60, le=7_200)
    # how long a ready model (no role: it serves no traffic) keeps what serves it once its run has
    # ended; then serving.sync deletes it, and deploying the model creates it again. Provisioned
    # throughput is billed by the hour, so an hour; an on-demand deployment is billed per token
    # (nothing while idle), so a week: the deferred weekly model waits for the running experiment
    # without a re-creation when deployed, and is retired once next week's model supersedes it
    serving_idle_provisioned_s: int = Field(default=3_600, ge=0)
    serving_idle_on_demand_s: int = Field(default=604_800, ge=0)
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
    # CPU seconds one worker spends on an outcome as the build plans it before it starts (more than
    # three times bench/export.py's 0.39 ms on a shared 2-core x86 host: room for slower hosts and data),
    # and the time kept for the upload after it; during the build the rate it really reaches is used
    dataset_build_seconds_per_row: float = Field(default=0.0012, gt=0)
    # seconds an outcome costs in passes 2 and 3 (de-duplicate, split, write), which run after pass 1
    # in the streaming process alone (about twice bench/export.py's 25 us on 200,000 outcomes)
    dataset_finish_seconds_per_row: float = Field(default=0.00005, ge=0)
    # pass 1 keeps what it made of each outcome (sql/0017_dataset_line_cache.sql): the next build reads
    # an unchanged outcome's line back for about this many worker seconds (bench/export.py measures)
    dataset_line_cache: bool = True
    dataset_cached_seconds_per_row: float = Field(default=0.0002, gt=0)
    dataset_upload_margin_s: float = Field(default=90, ge=0)

    # retention (see README "Scale"): an outcome is final once its longest outcome window has
    # closed after sending; raw provider payloads are kept this many days longer, then removed in
    # batches by RetentionFunction (the normalised events and the derived columns stay)
    outcome_final_days: int = Field(default=90, ge=1, le=3650)
    raw_event_retention_days: int = Field(default=30, ge=0, le=3650)
    retention_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # the dataset line cache keeps an outcome's lines this many days after it was sent (a build's
    # window is since_days, 90 by default: a month more for a wider run; an older outcome is built again)
    dataset_cache_days: int = Field(default=120, ge=1, le=3650)
    # GET /suppressions and GET /quarantine list a row once it is this old: a row is dated when its
    # transaction began (now()) but seen when it commits, so a listing that went past a younger row
    # would never return an older one committed later. Above the longest transaction that writes
    # them (ClassifierFunction's 180 s timeout: a Lambda's transaction ends with it)
    listing_settle_s: int = Field(default=240, ge=0, le=3600)
    # the reports' daily counts (ReportRollupFunction) follow the changes; as a safety net each day
    # whose outcomes can still change is also re-counted whole once this many hours (0: never)
    report_recount_hours: float = Field(default=24, ge=0, le=24 * 365)

    # reports (see README "Report"): the window they cover, how many campaigns they detail, the
    # smallest strategy cell they show, how long a GET /reports/latest link works
    report_window_days: int = Field(default=84, ge=7, le=730)
    report_campaigns: int = Field(default=10, ge=0, le=100)
    report_min_sample: int = Field(default=30, ge=1)
    report_url_ttl_s: int = Field(default=300, ge=30, le=3600)
    replies_dlq_url: str | None = None
    # where the evaluator announces each evaluation (ReportFunction listens); unset: not announced
    experiment_events_bus: str | None = None

    @property
    def classifier_model_id(self) -> str:
        """The configured classifier model, else the backend's default (Nova Lite on Bedrock)."""
        if self.classifier_model:
            return self.classifier_model
        return "amazon.nova-lite-v1:0" if self.classifier_backend == "bedrock" else "gpt-4o-mini"

    @property
    def base_model(self) -> str:
        return self.base_model_for(self.finetune_provider)

    def base_model_for(self, provider: str) -> str:
        """The configured base model for the configured provider, else the provider's default."""
        if self.finetune_base_model and provider == self.finetune_provider:
            return self.finetune_base_model
        return "amazon.nova-micro-v1:0:128k" if provider == "bedrock" else "gpt-4.1-mini-2025-04-14"

    def provider_org(self, provider: str, account: object) -> str | None:
        """The organisation of a provider account in the inline PROVIDER_ORGS_JSON (see `org_of`)."""
        return org_of(self.provider_orgs, provider, account)

    @cached_property
    def provider_orgs(self) -> dict[str, str]:
        """PROVIDER_ORGS_JSON parsed ({} when the map is in PROVIDER_ORGS_ARN's secret: the webhooks
        read clients.secrets.provider_orgs, which serves either)."""
        return parse_provider_orgs(self.provider_orgs_json)

    @field_validator("provider_orgs_json")
    @classmethod
    def _valid_provider_orgs(cls, value: str) -> str:
        _no_json_escapes(value)
        parse_provider_orgs(value)  # a typo is refused when the settings load, not at the first webhook
        return value

    @field_validator("provider_orgs_arn")
    @classmethod
    def _one_provider_orgs_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        inline = info.data.get("provider_orgs_json")
        if value and inline and parse_provider_orgs(inline):
            raise ValueError("set PROVIDER_ORGS_ARN or PROVIDER_ORGS_JSON, not both")
        return value

    @cached_property
    def api_caller_orgs(self) -> dict[str, frozenset[str]]:
        """API_CALLER_ORGS_JSON parsed: principal -> its organisations ({}: org scoping is off)."""
        return parse_caller_orgs(self.api_caller_orgs_json)

    @field_validator("api_caller_orgs_json")
    @classmethod
    def _valid_api_caller_orgs(cls, value: str) -> str:
        _no_json_escapes(value)
        parse_caller_orgs(value)  # refused when the settings load, not at the first request
        return value

    @field_validator("api_caller_orgs_arn")
    @classmethod
    def _one_caller_orgs_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and (info.data.get("api_caller_orgs_json") or "").strip():
            raise ValueError("set API_CALLER_ORGS_ARN or API_CALLER_ORGS_JSON, not both")
        return value

    @staticmethod
    def split(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if env.get(name.upper()) not in (None, "")}
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError.from_validation(exc) from None
        if settings.webhook_secrets_json and not settings.webhook_secrets_arn:
            # inline secrets (local runs) are checked now; the secret behind WEBHOOK_SECRETS_ARN when
            # it is read (clients.secrets.webhook_secrets), and by the deep health check
            try:
                inline: Any = json_noting_repeated_keys(settings.webhook_secrets_json)
            except ValueError as exc:
                raise ConfigurationError({"WEBHOOK_SECRETS_JSON": str(exc)}) from None
            # with the map behind PROVIDER_ORGS_ARN (read at the first request) only what needs no map
            # is checked now; the rest when the secrets are read (clients.secrets)
            problems = webhook_secret_problems(inline, {} if settings.provider_orgs_arn else settings.provider_orgs)
            if problems:
                raise ConfigurationError({"WEBHOOK_SECRETS_JSON": "; ".join(problems)})
        return settings


def org_of(provider_orgs: Mapping[str, str], provider: str, account: object) -> str | None:
    """The organisation of a provider account; `<provider>:*` is the default for that provider."""
    return provider_orgs.get(f"{provider}:{account}") or provider_orgs.get(f"{provider}:*")


def credential_values(value: str | list[str]) -> tuple[str, ...]:
    """One organisation's (or the only) values of a valid credential, newest first: a string, or the
    list of values accepted while it is rotated."""
    return (value,) if isinstance(value, str) else tuple(value)


def pipedrive_logins(
    users: str | list[str] | tuple[str, ...], passwords: str | list[str] | tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """The Basic-auth logins of one organisation (or of the only login), newest first. A login is
    rotated as a pair: two lists pair by position; a half kept as a plain string (not a list) goes
    with every value of the other (`"user"` with `["<new password>", "<old password>"]`). ValueError
    when both are lists of different lengths, whatever the lengths: `["<new user>"]` with
    `["<new password>", "<old password>"]` would pair the new user with the old password too."""
    if isinstance(users, str) and isinstance(passwords, str):
        return ((users, passwords),)
    if isinstance(users, str):
        return tuple((users, password) for password in passwords)
    if isinstance(passwords, str):
        return tuple((user, passwords) for user in users)
    if len(users) != len(passwords):
        raise ValueError("pipedrive_username and pipedrive_password list different numbers of values")
    return tuple(zip(users, passwords, strict=True))


def provider_org_ids(provider_orgs: Mapping[str, str], provider: str) -> set[str]:
    """The organisations ProviderOrgs maps some account of `provider` to (its `*` default included)."""
    return {org for key, org in provider_orgs.items() if key.partition(":")[0] == provider}


def webhook_secret_problems(secrets: Any, provider_orgs: Mapping[str, str]) -> list[str]:
    """What is wrong with the webhook secrets JSON for these ProviderOrgs (every problem of
    `webhook_secret_problems_by_name`, each once). The reasons name secret fields and organisations,
    never a value."""
    found: dict[str, None] = {}
    for problems in webhook_secret_problems_by_name(secrets, provider_orgs).values():
        found.update(dict.fromkeys(problems))
    return list(found)


def webhook_secret_problems_by_name(secrets: Any, provider_orgs: Mapping[str, str]) -> dict[str | None, list[str]]:
    """The problems of each credential of the webhook secrets JSON, by secret name (None, which no JSON
    key can be, when the whole JSON is unusable): a credential of ORG_CREDENTIALS that is one value
    although ProviderOrgs maps its provider's accounts to several organisations (whoever holds one of
    them could write into the others), a malformed per-org map or rotation list (empty, a value listed
    twice, a list where one value is sent), a value that can never verify (a SendGrid key that is no EC
    P-256 public key, an in-house secret that is not base64, a lone UTF-16 surrogate), a credential or
    an organisation given twice in the JSON (`secrets` parsed by
    domain.inputs.json_noting_repeated_keys), two organisations with the same credential, or a Pipedrive
    login and API token of different forms. A problem is filed under every name it involves, so that
    only the routes that read one of them are refused (clients.secrets.WebhookSecrets.value)."""
    if not isinstance(secrets, dict):
        return {None: ["must be a JSON object of secret name -> value"]}
    problems: dict[str | None, list[str]] = {}

    def add(names: tuple[str, ...] | list[str], problem: str) -> None:
        for name in names:
            problems.setdefault(name, []).append(problem)

    shared: dict[str, list[str]] = {}  # provider -> its credentials that are one value (or one list)
    malformed: set[str] = set()  # the credentials whose shape is wrong (nothing more is said of them)
    # json.loads keeps the last copy of a key given twice, silently: a rotation list added above the
    # old line would be dropped, and the new value refused once the provider switches to it
    for name in secrets.repeated if isinstance(secrets, RepeatedKeys) else ():
        malformed.add(name)
        said = name or '""'  # (a key may be the empty string)
        add([name], f"{said} is given twice in the secret (only the last copy would count): keep one line")
    for name in (*ORG_CREDENTIALS, *_APP_CREDENTIALS):
        value = secrets.get(name)
        if name in malformed or value is None or value == "":
            continue
        if isinstance(value, RepeatedKeys) and name not in _APP_CREDENTIALS:
            malformed.add(name)
            add([name], f"{name} gives {', '.join(value.repeated)} twice (only the last would count): keep one")
            continue
        if isinstance(value, dict) and name not in _APP_CREDENTIALS:
            if not value or not all(isinstance(k, str) and IDENTIFIER.fullmatch(k) for k in value):
                malformed.add(name)
                add([name], f"{name} must map each org_id (letters, digits, _.:@/+-) to a non-empty string")
                continue
            found = [_values_problem(name, v, f" of {org}") for org, v in value.items()]
            if any(found):
                malformed.add(name)
                add([name], next(p for p in found if p))
            elif name in _MATCHED and _shared_value(name, value):
                add([name], f"{name} gives two organisations the same value: each needs its own")
            continue
        problem = _values_problem(name, value, "")
        if problem:
            malformed.add(name)
            add([name], problem)
        elif ORG_CREDENTIALS.get(name) and len(provider_org_ids(provider_orgs, str(ORG_CREDENTIALS[name]))) > 1:
            shared.setdefault(str(ORG_CREDENTIALS[name]), []).append(name)
    for provider, names in shared.items():
        orgs = sorted(provider_org_ids(provider_orgs, provider))
        add(
            names,
            f"{', '.join(names)}: one value for every organisation, but ProviderOrgs maps {provider} accounts to "
            f'{len(orgs)} organisations ({", ".join(orgs)}); give each its own: {{"<org_id>": "<its value>", ...}}',
        )
    login = ("pipedrive_username", "pipedrive_password")
    user, password, token = (secrets.get(name) for name in (*login, "pipedrive_api_token"))
    if not malformed & set(login):  # (a malformed half is said above)
        if isinstance(user, dict) or isinstance(password, dict):
            if not (isinstance(user, dict) and isinstance(password, dict) and set(user) == set(password)):
                add(login, "pipedrive_username and pipedrive_password must both map the same organisations")
            else:
                _login_problems(add, {org: (user[org], password[org]) for org in user})
        elif user and password:
            _login_problems(add, {"": (user, password)})
    if user and token and isinstance(user, dict) != isinstance(token, dict):
        # the token is looked up by the login's organisation: one login has none (every lookup would
        # fail), and one token for per-organisation logins reads one account's persons for all of them
        add(
            ["pipedrive_api_token"],
            "pipedrive_api_token must take the login's form: one value with one pipedrive_username, "
            "one per organisation with one login per organisation",
        )
    return problems


def _values_problem(name: str, value: Any, where: str) -> str | None:
    """What is wrong with one organisation's (`where`) or the only value of a credential: a non-empty
    string, or (a credential a request is checked against, during a rotation) a non-empty list of
    non-empty strings, none listed twice."""
    if isinstance(value, str):
        if not value:
            return f"{name}{where} must be a non-empty string"
        problem = _shape_problem(name, value)
        return f"{name}{where} {problem}" if problem else None
    if not isinstance(value, list):
        shape = "a string" if name in _APP_CREDENTIALS else 'a string or a JSON object {"<org_id>": "<its value>", ...}'
        if name in ROTATABLE:
            shape = shape.replace("a string", "a string, a list of strings (during a rotation)", 1)
        return f"{name}{where} must be {shape}"
    if name not in ROTATABLE:
        return f"{name}{where} is sent to the provider's API: one value, not a list"
    if not value:
        return f"{name}{where} is an empty list: give at least one value"
    if not all(isinstance(v, str) and v for v in value):
        return f"{name}{where} must list non-empty strings"
    for index, item in enumerate(value):
        problem = _shape_problem(name, item)
        if problem:
            return f"{name}[{index}]{where} {problem}"
    if not name.startswith("pipedrive_") and len({_credential_key(name, v) for v in value}) < len(value):
        # (a Pipedrive half may repeat: `["u", "u"]` with two passwords; its logins are checked as pairs)
        return f"{name}{where} lists the same value twice"
    return None


def _shape_problem(name: str, value: str) -> str | None:
    """Why a value can never verify a request (the verifier would refuse it on every one), said
    without quoting it; None when it can."""
    try:
        value.encode()
    except UnicodeEncodeError:
        # a lone UTF-16 surrogate (JSON's "\ud83d" without its pair: half an escaped emoji): no request
        # can carry it, and every verifier encodes the value as UTF-8
        return "is not valid text (a lone UTF-16 surrogate, e.g. half of an escaped emoji): paste the value again"
    if name == "sendgrid_public_key":
        try:
            sendgrid_public_key(value)
        except ValueError as exc:
            return (
                f"is not a SendGrid verification key ({exc}): paste the base64 key SendGrid shows for the "
                "Signed Event Webhook (an EC P-256 public key)"
            )
    elif name == "crm_webhook_secret":
        try:
            standard_webhooks_key(value)
        except ValueError as exc:
            return f"is not a Standard Webhooks secret ({exc}): base64 (standard alphabet), with or without whsec_"
    return None


def _shared_value(name: str, per_org: Mapping[str, Any]) -> bool:
    """Whether two organisations hold one value (any of their rotation lists' values)."""
    seen: dict[str | bytes, str] = {}
    for org, value in per_org.items():
        for item in credential_values(value):
            key = _credential_key(name, item)
            if seen.setdefault(key, org) != org:
                return True
    return False


def _login_problems(add: Callable[[tuple[str, ...], str], None], logins: Mapping[str, tuple[Any, Any]]) -> None:
    """Pipedrive's logins, by organisation ("": the only one): two lists pair by position, and no
    login (as Basic auth sends it, "user:password") is given twice, within one organisation or across."""
    names = ("pipedrive_username", "pipedrive_password")
    seen: dict[str, str] = {}
    for org, (users, passwords) in logins.items():
        try:
            pairs = pipedrive_logins(users, passwords)
        except ValueError:
            where = f" of {org}" if org else ""
            add(
                names,
                f"pipedrive_username and pipedrive_password{where} list different numbers of values: a login is "
                "rotated as a pair, the lists pair by position (or one side is a string, kept for every value)",
            )
            return
        # Basic auth sends "user:password": ("a:b", "c") and ("a", "b:c") are one login
        for login in {f"{u}:{p}" for u, p in pairs}:
            if seen.setdefault(login, org) != org:
                add(names, "pipedrive_username and pipedrive_password give two organisations the same pair")
                return
        if len({f"{u}:{p}" for u, p in pairs}) < len(pairs):
            where = f" of {org}" if org else ""
            add(names, f"pipedrive_username and pipedrive_password{where} give the same login twice")
            return


def _credential_key(name: str, value: str) -> str | bytes:
    """What a credential verifies with, to find two organisations given the same one in different
    spellings: a Standard Webhooks secret is the base64 key after an optional `whsec_`, a SendGrid
    verification key the key itself (its uncompressed SubjectPublicKeyInfo, whether it was written
    as PEM or base64, with a compressed or an uncompressed point). A value that does not decode
    stays itself (it is refused as such)."""
    try:
        if name == "crm_webhook_secret":
            return standard_webhooks_key(value)
        if name == "sendgrid_public_key":
            return sendgrid_key_id(value)
    except ValueError:
        return value
    return value


def _no_json_escapes(text: str) -> None:
    """PROVIDER_ORGS_JSON and API_CALLER_ORGS_JSON come from template parameters whose AllowedPattern
    reads the JSON text as written: it cannot decode an escape (`\\/`, `\\u0020`), so ids are written
    as they are and a backslash, which JSON has only in escapes, is refused here as at deploy."""
    if "\\" in text:
        raise ValueError("has a backslash: write ids as they are, without JSON escapes")


def parse_provider_orgs(text: str | None) -> dict[str, str]:
    """PROVIDER_ORGS_JSON: a JSON object of "<provider>:<account id>" (or "<provider>:*") -> org_id.
    The errors name what is wrong, never the accounts."""
    parsed: Any = strict_json(text or "{}")
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object, e.g. {"hubspot:<portal id>": "<org_id>"}')
    for number, (key, org) in enumerate(parsed.items(), start=1):
        provider, colon, account = key.partition(":")
        if not colon or provider not in ORG_PROVIDERS or not account or any(c.isspace() or c == '"' for c in account):
            raise ValueError(
                f'key {number} is not "<provider>:<account id>" with a provider among {", ".join(ORG_PROVIDERS)}'
            )
        if not isinstance(org, str) or not IDENTIFIER.fullmatch(org):
            raise ValueError(f"the organisation of key {number} is not an org_id string (letters, digits, _.:@/+-)")
    return dict(parsed)


@lru_cache(maxsize=1)
def _process_settings() -> Settings:
    return Settings.from_env()


class _Scope:
    """The environment one function runs with, when several share this process (the local API)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        self.settings: Settings | None = None


_SCOPE: ContextVar[_Scope | None] = ContextVar("flywheel_settings_scope", default=None)


def get_settings() -> Settings:
    """This execution environment's settings, read once; ConfigurationError (naming the invalid
    variables) when one is invalid, on every call until it is fixed."""
    scope = _SCOPE.get()
    if scope is None:
        return _process_settings()
    if scope.settings is None:
        scope.settings = Settings.from_env(scope.environ)
    return scope.settings


@contextmanager
def settings_environment(environ: Mapping[str, str]) -> Iterator[None]:
    """Read the settings of this thread (and the tasks it starts) from `environ` rather than the
    process environment, until the block ends: `flywheel start-api` runs each API function with its
    own environment on a shared pool of threads, whatever another thread does to os.environ."""
    token = _SCOPE.set(_Scope(environ))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def reset_settings() -> None:
    """Forget the cached settings (tests and the local runner change the environment)."""
    _process_settings.cache_clear()
