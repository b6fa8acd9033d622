"""Value types shared by every layer: identifiers, log records, profiles, changesets."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

__all__ = [
    "Changeset",
    "ConsentRecord",
    "Decision",
    "Identifier",
    "Item",
    "LogRecord",
    "MergeRecord",
    "NewRecord",
    "Observation",
    "PossibleMatch",
    "PrivacyRequest",
    "Profile",
    "QuarantineEntry",
    "RankEvent",
    "TraitValue",
]


class Identifier(NamedTuple):
    """A typed value that points at a person, written ``type:value`` (``user_id:42``)."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """Split ``type:value`` at the first colon; raise ValueError when either side is empty."""
        kind, sep, value = text.partition(":")
        if not sep or not kind or not value:
            raise ValueError(f"identifier must look like type:value, got {text!r}")
        return cls(kind, value)


class NewRecord(msgspec.Struct, frozen=True):
    """A validated message on its way into the event log.

    Attributes:
        source: name of the source that sent it (dedupe is per source).
        message_id: the sender's messageId; the log keeps one record per (source, message_id).
        received_at: epoch seconds (UTC) when segue accepted the request.
        key: the partition key (the first identifier of the message).
        body: the message as received and normalised, JSON bytes.
    """

    source: str
    message_id: str
    received_at: float
    key: str
    body: bytes


class LogRecord(msgspec.Struct, frozen=True):
    """A record read back from the event log; ``offset`` grows by one per accepted record."""

    offset: int
    source: str
    message_id: str
    received_at: float
    key: str
    body: bytes


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A message segue kept aside instead of dropping: why, from whom, and the message itself."""

    id: int
    source: str
    received_at: float
    reason: str
    field: str | None
    body: bytes


class PrivacyRequest(msgspec.Struct, kw_only=True):
    """A data subject request (access or erasure) and where it stands.

    ``user`` holds the identifiers as the requester gave them (``{"email": "…"}``); it is
    needed until the request has run and is emptied when it finishes, so the request store
    never keeps a person's identifiers past their erasure. ``subjects`` are keyed hashes of
    the identifiers (as the suppression list keeps them), enough to find the request again.
    ``receipt`` says what was found or removed where (store → counts).
    ``status`` is ``pending``, ``running``, ``done`` or ``failed``.
    """

    request_id: str
    type: str
    status: str = "pending"
    created_at: float
    updated_at: float
    user: dict[str, str] = {}
    subjects: list[str] = []
    receipt: dict[str, Any] = {}
    error: str | None = None


class TraitValue(msgspec.Struct, frozen=True, kw_only=True):
    """The golden value of a trait with its lineage: where and when it came from, on which
    legal basis, and the survivorship rule that chose it."""

    value: Any
    source: str
    message_id: str
    at: float
    legal_basis: str | None = None
    rule: str = ""


class Observation(msgspec.Struct, kw_only=True):
    """One distinct value seen for a trait: kept so a conflict never loses data.

    ``first_at``/``at`` are event times (epoch seconds) of the first and latest sighting;
    ``source``/``message_id``/``legal_basis`` are those of the latest sighting.
    """

    value: Any
    source: str
    message_id: str
    first_at: float
    at: float
    count: int = 1
    legal_basis: str | None = None
    sources: list[str] = []


class MergeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Why two profiles became one: kept on the survivor so a merge can be explained and undone.

    Attributes:
        at: event time of the merge (epoch seconds).
        profile_id: the profile merged away.
        identifiers: the merged-away profile's identifiers at that moment.
        reason: ``identifier`` (a shared identifier), ``match`` (probabilistic) or ``manual``.
        via: the identifier on each side that linked them.
        message_id: the message that caused it, if any.
        score: match probability, for ``match``.
        explanation: per-field (field, level, weight) of the match.
    """

    at: float
    profile_id: str
    identifiers: list[Identifier]
    reason: str
    via: list[Identifier]
    message_id: str | None = None
    score: float | None = None
    explanation: list[tuple[str, str, float]] | None = None


class Profile(msgspec.Struct, kw_only=True):
    """One person's read model. Mutable on purpose: the processor folds events into it."""

    profile_id: str
    created_at: float
    updated_at: float
    first_seen: float
    last_seen: float
    event_count: int = 0
    identities: list[Identifier] = []
    traits: dict[str, TraitValue] = {}
    alternates: dict[str, list[Observation]] = {}
    merged_from: list[str] = []
    merges: list[MergeRecord] = []
    #: pairs of identifier groups an unmerge separated: never joined again
    separations: list[tuple[list[Identifier], list[Identifier]]] = []
    #: snapshots of the matchable traits (name, birthday, address, …) of the records this
    #: profile was built from, newest last; probabilistic matching compares against each
    records: list[dict[str, Any]] = []


class PossibleMatch(msgspec.Struct, kw_only=True):
    """Two profiles that look like one person but scored in the grey zone: a human decides.

    ``status`` is ``open``, ``accepted`` (they were merged), ``rejected`` (kept apart) or
    ``dismissed`` (a re-estimated model no longer finds them alike).
    """

    id: int = 0
    profile_a: str
    profile_b: str
    score: float
    explanation: list[tuple[str, str, float]] = []
    created_at: float = 0.0
    status: str = "open"


class Changeset(msgspec.Struct, kw_only=True):
    """Everything one processor batch changes, committed atomically with its checkpoint.

    Attributes:
        profiles: upserted profiles, whole.
        activity: profiles of which only the activity fields moved (``event_count``,
            ``first_seen``, ``last_seen``, ``updated_at``): most events only count. A store
            may write them whole; one that keeps these fields apart spares rewriting the
            document (a profile holds its traits' lineage and merge history: kilobytes).
            Never holds an id that is in ``profiles``.
        links: identifier → profile id, upserted.
        timeline: (profile_id, log offset, event time in epoch seconds) rows to add.
        redirects: merged-away profile id → survivor; the store re-points the timeline and
            keeps the redirect so the old id still resolves.
        new_profiles: profiles created minus profiles merged away (a count delta).
        new_identities: identifiers linked for the first time (a count delta).
        drop_profiles: profiles to delete with their timeline rows, before anything else
            (an unmerge re-derives them).
        clear_redirects: old ids that are real profiles again and must stop redirecting.
        unlink: identifiers that no longer belong to any profile.
        block_keys: profile id → its blocking keys for matching, replacing the old ones
            (an empty list removes the profile from the index).
        match_records: profile id → its normalised match records (opaque bytes owned by
            the matcher), replacing the old ones; kept apart from the profile document so
            scoring candidates never loads whole profiles.
        features: profile id → its real-time features (opaque bytes owned by the feature
            code), replacing the old ones; a merged-away profile's row is dropped.
        possible: grey-zone matches to record.
    """

    profiles: dict[str, Profile] = {}
    activity: dict[str, Profile] = {}
    links: dict[Identifier, str] = {}
    timeline: list[tuple[str, int, float]] = []
    redirects: dict[str, str] = {}
    new_profiles: int = 0
    new_identities: int = 0
    drop_profiles: list[str] = []
    clear_redirects: list[str] = []
    unlink: list[Identifier] = []
    block_keys: dict[str, list[str]] = {}
    match_records: dict[str, bytes] = {}
    features: dict[str, bytes] = {}
    possible: list[PossibleMatch] = []


class Item(msgspec.Struct, kw_only=True):
    """A catalog entry (product, offer or content) with a content payload per channel.

    Attributes:
        item_id: the catalog's own id (stable; events refer to it as ``product_id``).
        type: ``product``, ``offer`` or ``content``.
        category / brand / price / tags: the attributes decisioning filters and ranks on.
        attributes: any other attribute, kept as given.
        available / stock: an unavailable or out-of-stock (``stock == 0``) item is never
            recommended; ``stock`` None means not tracked.
        start_at / end_at: availability window, epoch seconds (UTC); None = open.
        content: channel (``web``, ``app``, ``email``, …) → the payload to render.
        updated_at: when segue last stored it, epoch seconds.
    """

    item_id: str
    type: str = "product"
    title: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    tags: list[str] = []
    attributes: dict[str, Any] = {}
    available: bool = True
    stock: int | None = None
    start_at: float | None = None
    end_at: float | None = None
    content: dict[str, dict[str, Any]] = {}
    updated_at: float = 0.0


class Decision(msgspec.Struct, kw_only=True):
    """One answer of decide, as logged: enough to attribute feedback and replay the policy.

    ``propensities[i]`` is the probability with which the policy would have put
    ``items[i]`` where it did — what off-policy evaluation needs.
    """

    decision_id: str
    created_at: float
    placement: str
    profile_id: str | None
    items: list[str]
    scores: list[float]
    propensities: list[float]
    strategy: str
    personalized: bool
    reason: str = ""
    model_version: str = ""
    experiment: str | None = None
    variant: str | None = None
    features_used: list[str] = []
    data_categories: list[str] = []
    context: dict[str, Any] = {}


class RankEvent(msgspec.Struct, kw_only=True):
    """A rank call awaiting its reward (Azure Personalizer semantics).

    ``ranking`` lists action ids best first with ``probabilities`` aligned to it;
    ``reward_action_id`` is the one the caller should show. An event created with
    ``defer_activation`` learns nothing until activated.
    """

    event_id: str
    created_at: float
    context_features: list[Any]
    action_ids: list[str]
    action_features: list[list[Any]]
    ranking: list[str]
    probabilities: list[float]
    reward_action_id: str | None
    activated: bool = True
    reward: float | None = None
    rewarded_at: float | None = None
    learned: bool = False


class ConsentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One consent signal about one subject, as the consent ledger keeps it (never edited).

    ``subject`` is an identifier (``user_id:42``, ``anonymous_id:…``). ``purposes`` holds
    only what this signal said (purpose → granted); ``region`` and ``gpc`` likewise, ``None``
    when it said nothing. ``proof`` is the raw signal as received (a TC string, a US Privacy
    string, the JSON body), so the ledger can show what consent rested on. ``seq`` is the
    ledger's order, set by the store.
    """

    subject: str
    at: float
    source: str
    purposes: dict[str, bool] = {}
    region: str | None = None
    gpc: bool | None = None
    objects_to_automated: bool | None = None
    proof: str | None = None
    seq: int = 0


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the tamper-evident audit log (never edited, never erased).

    ``subjects`` are keyed hashes of the identifiers or profile ids the action touched, so
    the log can be filtered by person yet holds nothing personal and outlives an erasure.
    ``details`` is JSON data about the action (no personal data). ``hash`` is
    SHA-256 over ``prev_hash`` and the entry's canonical encoding, which chains every
    entry to all before it; ``seq``, ``prev_hash`` and ``hash`` are set by the audit log.
    """

    seq: int = 0
    at: float
    actor: str
    action: str
    subjects: list[str] = []
    details: dict[str, Any] = {}
    prev_hash: str = ""
    hash: str = ""


class AuditHead(msgspec.Struct, frozen=True, kw_only=True):
    """The last entry of the audit log as the log itself recorded it, sealed with a key.

    A chain of plain hashes cannot show that its tail was cut off, nor that it was
    rewritten from some entry onwards; the head's seal (an HMAC with the installation
    secret) can, as long as the secret is not in the attacker's hands.
    """

    seq: int
    hash: str
    seal: str


__all__ += ["AuditEntry", "AuditHead"]


#: what a unit adds to a report cell, in this order; every report store keeps these columns
REPORT_METRICS = (
    "impressions",
    "clicks",
    "add_to_carts",
    "conversions",
    "revenue",
    "sessions",
    "bounces",
    "timed_pages",
    "time_on_page_s",
    "time_on_page_sq",
)


class ReportRow(msgspec.Struct, kw_only=True):
    """One unit's numbers in one report cell (placement, experiment, variant) on one day.

    Written as deltas (a commit adds them to what is stored; ``bounces`` goes down when a
    one-page session gets its second page) and read back as sums. ``day`` is the UTC date
    of the exposure the numbers follow (``YYYY-MM-DD``; ``""`` in sums over a range).
    ``experiment`` and ``variant`` are ``""`` for decisions outside any experiment.
    ``clicks`` counts exposed decisions that got a click (at most one per decision);
    ``timed_pages`` are page views followed by another in the same session, whose seconds
    add up in ``time_on_page_s`` (and their squares in ``time_on_page_sq``).
    """

    placement: str
    experiment: str
    variant: str
    unit: str
    day: str
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    conversions: int = 0
    revenue: float = 0.0
    sessions: int = 0
    bounces: int = 0
    timed_pages: int = 0
    time_on_page_s: float = 0.0
    time_on_page_sq: float = 0.0


class ReportCell(msgspec.Struct, kw_only=True):
    """The sums of one (placement, experiment, variant, day) over its units; ``visitors`` is
    how many units have numbers there."""

    placement: str
    experiment: str
    variant: str
    day: str
    visitors: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    conversions: int = 0
    revenue: float = 0.0
    sessions: int = 0
    bounces: int = 0
    timed_pages: int = 0
    time_on_page_s: float = 0.0
    time_on_page_sq: float = 0.0


class Covariate(msgspec.Struct, frozen=True, kw_only=True):
    """A unit's pre-period numbers in an experiment (for CUPED): the orders and revenue of
    the person before the unit's first exposure. Kept once; later ones are ignored."""

    placement: str
    experiment: str
    unit: str
    orders: int
    revenue: float


class ReportBatch(msgspec.Struct, kw_only=True):
    """What one batch of the reports consumer writes, atomically with its checkpoint.

    ``rows`` are added to the stored rows; ``covariates`` are kept only for units that have
    none; ``people`` (person key → the attribution state, opaque bytes) are replaced and
    ``drop_people`` removed (merged-away people whose state moved to the survivor).
    """

    rows: list[ReportRow] = []
    covariates: list[Covariate] = []
    people: dict[str, bytes] = {}
    drop_people: list[str] = []


__all__ += ["REPORT_METRICS", "Covariate", "ReportBatch", "ReportCell", "ReportRow"]
