"""Configuration: ``segue.yaml`` plus environment overrides, parsed once into frozen Structs.

Read by the composition root (``runtime``) and passed down; nothing else reads the
environment. Every problem in a file is reported at once (``ConfigError.problems``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml

from segue.errors import ConfigError

__all__ = [
    "BudgetSettings",
    "ExperimentSettings",
    "IdentitySettings",
    "OverloadSettings",
    "PlacementSettings",
    "PlanSettings",
    "RankSettings",
    "ReportSettings",
    "Settings",
    "SourceSettings",
    "SurvivorshipSettings",
    "TraitRule",
    "VariantSettings",
    "experiment_period",
    "instant",
    "load_settings",
]


class PlanSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tracking plan: ``mode`` for the unplanned, JSON Schema per event name."""

    mode: str = "accept"
    events: dict[str, dict[str, Any]] = {}


class SourceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A sender of events with its own write key.

    ``connector`` (a builtin connector name or a path to a mapping file) maps the source's
    webhooks and is the default for its imports; ``connector_options`` sets the mapping's
    ``params``; with ``webhook_secret`` set, webhooks must carry a valid
    ``X-Shopify-Hmac-Sha256`` signature.
    """

    name: str
    write_key: str | None = None
    #: recorded in the lineage of every trait this source sets (consent, contract, …)
    legal_basis: str | None = None
    tracking_plan: PlanSettings | None = None
    connector: str | None = None
    connector_options: dict[str, Any] = {}
    webhook_secret: str | None = None


_PRIORITY = [
    "user_id",
    "email",
    "phone",
    "crm_id",
    "loyalty_id",
    "device_id",
    "advertising_id",
    "anonymous_id",
]


class IdentitySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Identity rules: which identifiers link, how many of a type a profile may hold."""

    #: identifier types in the order that decides what yields when a limit would be broken
    priority: list[str] = msgspec.field(default_factory=lambda: list(_PRIORITY))
    #: at most this many identifiers of a type per profile (a shared tablet must not merge)
    limits: dict[str, int] = msgspec.field(default_factory=lambda: {"user_id": 1})
    #: values that never link, compared case-insensitively, on top of the built-in list
    blocked_values: list[str] = []
    #: trait name → identifier type, for custom ids carried as traits (loyalty card, CRM id)
    trait_identifiers: dict[str, str] = msgspec.field(
        default_factory=lambda: {"loyalty_id": "loyalty_id", "crm_id": "crm_id"}
    )
    #: region for phone numbers written without a country code (ISO 3166 alpha-2)
    phone_region: str = "US"
    #: probabilistic matching of records that share no identifier
    matching: bool = True
    match_threshold: float | None = None
    possible_threshold: float | None = None


class TraitRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one trait's golden value is chosen among the values seen."""

    rule: str = "non_empty"
    sources: list[str] = []


class SurvivorshipSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Golden-record rules: a default, per-trait overrides, a default source ranking."""

    default: str = "non_empty"
    source_priority: list[str] = []
    traits: dict[str, TraitRule] = {}


class RankSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rank/Reward (``/v1/rank``): the contextual bandit and its reward loop.

    ``reward_wait_s`` counts from the rank call: rewards and activations are taken within it,
    and an activated event with no reward then learns ``default_reward``. Rewards are clamped
    into ``[reward_min, reward_max]``. ``exploration`` is the ε floor (Personalizer's
    exploration %); ``alpha`` the width of LinUCB's bound or the scale of Thompson's
    posterior; ``feature_bits`` the log2 of the hashed feature space.
    """

    algorithm: str = "linucb"
    exploration: float = 0.2
    alpha: float = 0.5
    feature_bits: int = 12
    reward_wait_s: float = 10.0
    default_reward: float = 0.0
    reward_min: float = -1.0
    reward_max: float = 1.0


class RegionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A region's consent regime: ``opt_in`` (GDPR-style: nothing but ``necessary`` until
    granted) or ``opt_out`` (CCPA-style: allowed until refused; GPC is a binding opt-out of
    sale/share and targeted advertising). ``codes`` are the ISO 3166 country or subdivision
    codes (``DE``, ``US-CA``) that belong to it."""

    regime: str = "opt_in"
    codes: list[str] = []


def _default_regions() -> dict[str, RegionSettings]:
    eea = [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    ]
    return {
        "EEA": RegionSettings(regime="opt_in", codes=eea),
        "UK": RegionSettings(regime="opt_in", codes=["GB", "UK"]),
        "CH": RegionSettings(regime="opt_in", codes=["CH"]),
        "US-CA": RegionSettings(regime="opt_out", codes=["US-CA"]),
        "US": RegionSettings(regime="opt_out", codes=["US"]),
    }


class PrivacySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Consent, regions, IAB TCF, retention and erasure.

    ``default_region`` applies when neither the consent record nor the request names a
    region; ``default_regime`` applies to a region no entry of ``regions`` lists.
    ``tcf_vendor_id`` is segue's own vendor id in IAB TCF strings (``SEGUE_TCF_VENDOR_ID``):
    personalised content needs TCF purposes 5 and 6 and consent for this vendor.
    ``retention_days`` limits how long events are kept per purpose (0 = forever).
    ``hash_fields`` / ``drop_fields`` are the dotted paths of personal fields hashed or dropped
    from events that arrive without analytics consent; ``aggregate_unattached`` lets such
    events still count in item popularity (consent-neutral aggregates, no person).
    """

    default_region: str | None = None
    default_regime: str = "opt_out"
    regions: dict[str, RegionSettings] = msgspec.field(default_factory=_default_regions)
    tcf_vendor_id: int | None = None
    retention_days: dict[str, int] = {}
    aggregate_unattached: bool = False
    hash_fields: list[str] = msgspec.field(default_factory=lambda: ["context.ip"])
    drop_fields: list[str] = msgspec.field(default_factory=lambda: ["traits", "context.traits"])
    #: seal personal fields of logged events with per-person keys (crypto-shredding):
    #: ``traits`` and ``context`` always, ``properties`` when it holds one of
    #: ``personal_properties``
    encrypt_events: bool = True
    personal_properties: list[str] = msgspec.field(
        default_factory=lambda: [
            "email",
            "phone",
            "firstName",
            "lastName",
            "first_name",
            "last_name",
            "birthday",
            "address",
        ]
    )
    #: seconds between runs of the retention job
    retention_interval_s: float = 3600.0


class PlacementSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A placement: a slot that asks for decisions, with its strategy and business rules."""

    strategy: str = "personalized"
    k: int = 10
    channel: str = "web"
    exploration: bool = True
    types: list[str] = []
    categories: list[str] = []
    exclude_purchased: bool = True
    exclude_cart: bool = False
    frequency_cap: int | None = 10
    pinned: list[str] = []
    promoted: list[str] = []
    promoted_share: float = 0.2
    max_per_category: int | None = 3


class BudgetSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One class of requests' share of a process: how many run at once, how many may wait.

    ``max_queue`` defaults to four times ``max_in_flight``.
    """

    max_in_flight: int = 32
    max_queue: int | None = None

    @property
    def queue(self) -> int:
        return 4 * self.max_in_flight if self.max_queue is None else self.max_queue


class OverloadSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Load shedding: what a process refuses with ``503`` + ``Retry-After`` (``api.admission``).

    Each class of requests (``collect``, ``decide``, ``admin``, ``ops``) has its own budget, so
    a flood of one never starves another. A request over ``max_in_flight`` waits in its
    budget's queue for at most ``queue_interval_ms``, or ``queue_target_ms`` once the queue has
    not been empty for ``queue_interval_ms`` (a standing queue: overload, not a burst).
    ``log_backlog`` bounds the records handed to the event log and not yet acknowledged;
    while the oldest has waited ``log_stall_s``, new collection requests are refused.
    """

    enabled: bool = True
    retry_after_s: int = 1
    queue_target_ms: float = 10.0
    queue_interval_ms: float = 100.0
    collect: BudgetSettings = msgspec.field(
        default_factory=lambda: BudgetSettings(max_in_flight=32)
    )
    decide: BudgetSettings = msgspec.field(default_factory=lambda: BudgetSettings(max_in_flight=32))
    admin: BudgetSettings = msgspec.field(default_factory=lambda: BudgetSettings(max_in_flight=16))
    ops: BudgetSettings = msgspec.field(default_factory=lambda: BudgetSettings(max_in_flight=16))
    log_backlog: int = 50_000
    log_stall_s: float = 2.0


class VariantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One arm of an experiment: its share of the traffic and what it changes.

    ``strategy`` and ``exploration`` replace the placement's; ``parameters`` overrides any
    other placement setting (``k``, ``frequency_cap``, ``max_per_category``, …); ``model``
    gives the variant a ranker of its own, which learns only from this variant's feedback.
    """

    name: str
    weight: float = 1.0
    strategy: str | None = None
    exploration: bool | None = None
    model: str | None = None
    parameters: dict[str, Any] = {}


def _personalized_arm() -> list[VariantSettings]:
    return [VariantSettings(name="personalized")]


class ExperimentSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A split of one placement's traffic into variants and a persistent holdout.

    ``holdout`` is the share of units that get the contextual answer (no personal data);
    the variants share the rest by ``weight``. ``start`` and ``end`` (ISO 8601; a date means
    midnight UTC) bound when the experiment assigns; ``attribution_window_s`` is how long
    after an exposure a click, an add-to-cart or an order counts for it.
    """

    name: str
    placement: str
    variants: list[VariantSettings] = msgspec.field(default_factory=_personalized_arm)
    holdout: float = 0.1
    start: str | None = None
    end: str | None = None
    attribution_window_s: float = 86400.0


class ReportSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """KPI reports: the reports consumer and differentially private releases.

    ``privacy_budget`` is the total ε each report consumer may spend on noisy releases
    (``consumer_budgets`` overrides it per consumer) and ``privacy_budget_delta`` its total
    δ; ``dp_delta`` is the δ of one Gaussian release. ``contribution_bounds`` caps what one
    unit adds to each released number (the sensitivity the noise is calibrated to).
    ``session_timeout_s`` is the inactivity that ends a session.
    """

    batch: int = 4000
    session_timeout_s: float = 1800.0
    privacy_budget: float = 10.0
    consumer_budgets: dict[str, float] = {}
    privacy_budget_delta: float = 1e-4
    dp_delta: float = 1e-6
    contribution_bounds: dict[str, float] = {}


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything segue can be configured with; defaults make ``segue serve`` useful alone."""

    host: str = "127.0.0.1"
    port: int = 8080
    data: str = "./segue-data"
    store: str = "sqlite"
    log: str = "sqlite"
    #: Redis for the change feed between processes (and the shared cache); None: the
    #: processes of one machine share a feed in the data folder
    redis_url: str | None = None
    admin_key: str | None = None
    publishable_key: str | None = None
    sources: list[SourceSettings] = []
    max_message_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    processor_batch: int = 4000
    log_level: str = "warning"
    identity: IdentitySettings = msgspec.field(default_factory=IdentitySettings)
    survivorship: SurvivorshipSettings = msgspec.field(default_factory=SurvivorshipSettings)
    placements: dict[str, PlacementSettings] = {}
    rank: RankSettings = msgspec.field(default_factory=RankSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)
    experiments: list[ExperimentSettings] = []
    reports: ReportSettings = msgspec.field(default_factory=ReportSettings)
    overload: OverloadSettings = msgspec.field(default_factory=OverloadSettings)


_ENV = {
    "SEGUE_HOST": "host",
    "SEGUE_PORT": "port",
    "SEGUE_DATA": "data",
    "SEGUE_STORE": "store",
    "SEGUE_LOG": "log",
    "SEGUE_REDIS_URL": "redis_url",
    "SEGUE_ADMIN_KEY": "admin_key",
    "SEGUE_PUBLISHABLE_KEY": "publishable_key",
    "SEGUE_MAX_MESSAGE_BYTES": "max_message_bytes",
    "SEGUE_MAX_REQUEST_BYTES": "max_request_bytes",
    "SEGUE_LOG_LEVEL": "log_level",
}
#: environment variables that set a key inside a section: name → (section, key)
_ENV_NESTED = {
    "SEGUE_TCF_VENDOR_ID": ("privacy", "tcf_vendor_id"),
    "SEGUE_DEFAULT_REGION": ("privacy", "default_region"),
}


def load_settings(
    config: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Merge, in rising precedence: defaults, the YAML file, the environment, ``overrides``.

    ``SEGUE_WRITE_KEY`` sets the write key of the source ``default`` (created if absent).

    Raises:
        ConfigError: the file is unreadable or any value has the wrong type or name.
    """
    raw: dict[str, Any] = {}
    problems: list[str] = []
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"cannot read {config}: {exc}"]) from exc
        if not isinstance(loaded, dict):
            raise ConfigError([f"{config}: top level must be a mapping"])
        raw.update(loaded)
    for name, key in _ENV.items():
        if name in env and env[name] != "":
            raw[key] = env[name]
    for name, (section, key) in _ENV_NESTED.items():
        if name in env and env[name] != "":
            part = raw.get(section)
            raw[section] = {**(part if isinstance(part, dict) else {}), key: env[name]}
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    write_key = env.get("SEGUE_WRITE_KEY")
    if write_key:
        sources = [dict(s) for s in raw.get("sources", []) if isinstance(s, dict)]
        for source in sources:
            if source.get("name") == "default":
                source["write_key"] = write_key
                break
        else:
            sources.append({"name": "default", "write_key": write_key})
        raw["sources"] = sources
    _dates_as_text(raw)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError([str(exc)]) from None
    names = [s.name for s in settings.sources]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"source {name!r} is defined more than once")
    if "preference_center" in names:
        problems.append("source name 'preference_center' is reserved for PUT /v1/preferences")
    for src in settings.sources:
        if src.connector is None and (src.webhook_secret or src.connector_options):
            problems.append(
                f"source {src.name!r}: webhook_secret and connector_options need a connector"
            )
    if settings.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        problems.append("log_level must be debug, info, warning, error or critical")
    keys = [s.write_key for s in settings.sources if s.write_key]
    if len(keys) != len(set(keys)):
        problems.append("two sources share a write key; each source needs its own")
    problems += _privacy_problems(settings.privacy)
    ident = settings.identity
    for name, value in (
        ("match_threshold", ident.match_threshold),
        ("possible_threshold", ident.possible_threshold),
    ):
        if value is not None and not 0.0 < value < 1.0:
            problems.append(f"identity.{name} must be a probability between 0 and 1")
    if any(limit < 1 for limit in ident.limits.values()):
        problems.append("identity.limits must be at least 1 per type")
    for pname, placement in settings.placements.items():
        if not 1 <= placement.k <= 100:
            problems.append(f"placements.{pname}.k must be between 1 and 100")
        if not 0.0 <= placement.promoted_share <= 1.0:
            problems.append(f"placements.{pname}.promoted_share must be between 0 and 1")
    rules = {"non_empty", "most_recent", "most_frequent", "first_seen", "source_priority"}
    for name, rule in [("default", settings.survivorship.default)] + [
        (trait, r.rule) for trait, r in settings.survivorship.traits.items()
    ]:
        if rule not in rules:
            problems.append(f"survivorship rule for {name!r} must be one of {sorted(rules)}")
    if settings.max_message_bytes > settings.max_request_bytes:
        problems.append("max_message_bytes must not exceed max_request_bytes")
    problems += _rank_problems(settings.rank)
    problems += _experiment_problems(settings)
    problems += _overload_problems(settings.overload)
    if problems:
        raise ConfigError(problems)
    return settings


def _rank_problems(rank: RankSettings) -> list[str]:
    problems = []
    if rank.algorithm not in ("linucb", "thompson"):
        problems.append("rank.algorithm must be linucb or thompson")
    if not 0.0 <= rank.exploration <= 1.0:
        problems.append("rank.exploration must be between 0 and 1")
    if not rank.alpha >= 0:
        problems.append("rank.alpha must not be negative")
    if not 4 <= rank.feature_bits <= 20:
        problems.append("rank.feature_bits must be between 4 and 20")
    if not rank.reward_wait_s > 0:
        problems.append("rank.reward_wait_s must be positive")
    if not rank.reward_min < rank.reward_max:
        problems.append("rank.reward_min must be below rank.reward_max")
    elif not rank.reward_min <= rank.default_reward <= rank.reward_max:
        problems.append("rank.default_reward must lie between rank.reward_min and reward_max")
    return problems


def _overload_problems(overload: OverloadSettings) -> list[str]:
    problems = []
    if overload.retry_after_s < 1:
        problems.append("overload.retry_after_s must be at least 1")
    if not 0 < overload.queue_target_ms <= overload.queue_interval_ms:
        problems.append(
            "overload.queue_target_ms must be more than 0 and at most queue_interval_ms"
        )
    for name in ("collect", "decide", "admin", "ops"):
        budget: BudgetSettings = getattr(overload, name)
        if budget.max_in_flight < 1 or budget.queue < 0:
            problems.append(
                f"overload.{name}: max_in_flight must be at least 1, max_queue 0 or more"
            )
    if overload.log_backlog < 1:
        problems.append("overload.log_backlog must be at least 1")
    if not overload.log_stall_s > 0:
        problems.append("overload.log_stall_s must be more than 0")
    return problems


def instant(text: str) -> float:
    """An ISO 8601 date or time as epoch seconds; a date is midnight UTC, a time without a
    zone is UTC.

    Raises:
        ValueError: not an ISO 8601 date or time.
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def experiment_period(experiment: ExperimentSettings) -> tuple[float, float]:
    """When an experiment assigns, as epoch seconds: ``[start, end)``, open-ended as ±inf.

    Raises:
        ValueError: a bound is not an ISO 8601 date or time.
    """
    start = float("-inf") if experiment.start is None else instant(experiment.start)
    end = float("inf") if experiment.end is None else instant(experiment.end)
    return start, end


def _dates_as_text(raw: dict[str, Any]) -> None:
    """YAML reads ``2025-01-01`` as a date: experiment bounds are kept as ISO text."""
    experiments = raw.get("experiments")
    if not isinstance(experiments, list):
        return
    for experiment in experiments:
        if isinstance(experiment, dict):
            for key in ("start", "end"):
                value = experiment.get(key)
                if isinstance(value, date):  # datetime is a date too
                    experiment[key] = value.isoformat()


#: placement settings a variant may override through ``parameters``
_VARIANT_PARAMETERS = frozenset(PlacementSettings.__struct_fields__) - {"strategy", "exploration"}


def _experiment_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    periods: dict[str, list[tuple[float, float, str]]] = {}
    names = [e.name for e in settings.experiments]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"experiment {name!r} is defined more than once")
    for e in settings.experiments:
        where = f"experiments.{e.name}"
        if not e.name.strip() or not e.placement.strip():
            problems.append(f"{where}: name and placement must not be empty")
        if not 0.0 <= e.holdout < 1.0:
            problems.append(f"{where}.holdout must be at least 0 and below 1")
        if not e.variants:
            problems.append(f"{where}.variants must list at least one variant")
        arms = [v.name for v in e.variants]
        if "holdout" in arms:
            problems.append(f"{where}: 'holdout' is the name of the holdout; rename the variant")
        if len(set(arms)) != len(arms) or any(not a.strip() for a in arms):
            problems.append(f"{where}.variants need distinct, non-empty names")
        if any(not v.weight > 0 for v in e.variants):
            problems.append(f"{where}.variants: every weight must be more than 0")
        for v in e.variants:
            unknown = sorted(set(v.parameters) - _VARIANT_PARAMETERS)
            if unknown:
                problems.append(
                    f"{where}.{v.name}.parameters: unknown placement settings {unknown}; "
                    f"known: {sorted(_VARIANT_PARAMETERS)}"
                )
                continue
            try:
                msgspec.convert(v.parameters, PlacementSettings, strict=False)
            except msgspec.ValidationError as exc:
                problems.append(f"{where}.{v.name}.parameters: {exc}")
        if not e.attribution_window_s > 0:
            problems.append(f"{where}.attribution_window_s must be more than 0")
        try:
            start, end = experiment_period(e)
        except ValueError:
            problems.append(f"{where}: start and end must be ISO 8601 dates or times")
            continue
        if start >= end:
            problems.append(f"{where}: start must be before end")
        periods.setdefault(e.placement, []).append((start, end, e.name))
    for placement, spans in periods.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                problems.append(
                    f"experiments {first!r} and {second!r} overlap on placement "
                    f"{placement!r}: one experiment per placement at a time"
                )
    r = settings.reports
    if not 1 <= r.batch <= 100_000:
        problems.append("reports.batch must be between 1 and 100000")
    if not r.session_timeout_s > 0:
        problems.append("reports.session_timeout_s must be more than 0")
    if not r.privacy_budget >= 0 or any(not b >= 0 for b in r.consumer_budgets.values()):
        problems.append("reports.privacy_budget and consumer_budgets must not be negative")
    if not 0.0 < r.dp_delta < 1.0 or not 0.0 <= r.privacy_budget_delta < 1.0:
        problems.append("reports.dp_delta and privacy_budget_delta must be between 0 and 1")
    if any(not b > 0 for b in r.contribution_bounds.values()):
        problems.append("reports.contribution_bounds must be more than 0")
    return problems


def _privacy_problems(privacy: PrivacySettings) -> list[str]:
    problems = []
    for name, region in privacy.regions.items():
        if region.regime not in ("opt_in", "opt_out"):
            problems.append(f"privacy.regions.{name}.regime must be opt_in or opt_out")
    if privacy.default_regime not in ("opt_in", "opt_out"):
        problems.append("privacy.default_regime must be opt_in or opt_out")
    if privacy.tcf_vendor_id is not None and not 1 <= privacy.tcf_vendor_id <= 65535:
        problems.append("privacy.tcf_vendor_id must be between 1 and 65535")
    if any(days < 0 for days in privacy.retention_days.values()):
        problems.append("privacy.retention_days must be 0 (forever) or more days")
    if not privacy.retention_interval_s > 0:
        problems.append("privacy.retention_interval_s must be more than 0")
    return problems
