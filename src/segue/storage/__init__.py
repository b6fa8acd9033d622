"""Storage and event-log adapters, chosen by URL scheme and imported lazily.

The registry maps a scheme to ``"module:Class"`` so a missing optional driver only fails when
that backend is asked for, with the extra to install in the message.
"""

from __future__ import annotations

__all__ = [
    "AUDITS",
    "CATALOGS",
    "CHANGES",
    "CONSENTS",
    "DECISIONS",
    "KEYS",
    "LOGS",
    "PRIVACY",
    "QUARANTINES",
    "REPORTS",
    "SHARED_CACHES",
    "STORES",
]


def _postgres(target: str) -> dict[str, str]:
    """``target`` under both URL schemes libpq understands."""
    return dict.fromkeys(("postgresql", "postgres"), target)


#: scheme → factory path for the event log
LOGS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite:SqliteEventLog",
    "memory": "segue.storage.memory:MemoryEventLog",
    "nats": "segue.storage.nats_log:NatsEventLog",
}
#: scheme → factory path for the state (profile) store
STORES: dict[str, str] = {
    "sqlite": "segue.storage.sqlite:SqliteProfileStore",
    "memory": "segue.storage.memory:MemoryProfileStore",
    **_postgres("segue.storage.postgres:PostgresProfileStore"),
}
#: scheme (of the store URL) → factory path for the quarantine
QUARANTINES: dict[str, str] = {
    "sqlite": "segue.storage.sqlite:SqliteQuarantine",
    "memory": "segue.storage.memory:MemoryQuarantine",
    **_postgres("segue.storage.postgres:PostgresQuarantine"),
}
#: scheme (of the store URL) → factory path for the catalog
CATALOGS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_catalog:SqliteCatalogStore",
    "memory": "segue.storage.memory_catalog:MemoryCatalogStore",
    **_postgres("segue.storage.postgres_catalog:PostgresCatalogStore"),
}
#: scheme (of the store URL) → factory path for the decision log and rank events
DECISIONS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_decisions:SqliteDecisionStore",
    "memory": "segue.storage.memory_decisions:MemoryDecisionStore",
    **_postgres("segue.storage.postgres_decisions:PostgresDecisionStore"),
}
#: scheme (of the store URL) → factory path for the data keys of crypto-shredding
KEYS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_keys:SqliteKeyStore",
    "memory": "segue.storage.memory_keys:MemoryKeyStore",
    **_postgres("segue.storage.postgres_keys:PostgresKeyStore"),
}
#: scheme (of the store URL) → factory path for privacy requests and the suppression list
PRIVACY: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_privacy:SqlitePrivacyStore",
    "memory": "segue.storage.memory_privacy:MemoryPrivacyStore",
    **_postgres("segue.storage.postgres_privacy:PostgresPrivacyStore"),
}
#: scheme (of the store URL) → factory path for the consent ledger
CONSENTS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_consent:SqliteConsentStore",
    "memory": "segue.storage.memory_consent:MemoryConsentStore",
    **_postgres("segue.storage.postgres_consent:PostgresConsentStore"),
}
#: scheme (of the store URL) → factory path for the hash-chained audit log
AUDITS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_audit:SqliteAuditLog",
    "memory": "segue.storage.memory_audit:MemoryAuditLog",
    **_postgres("segue.storage.postgres_audit:PostgresAuditLog"),
}
#: scheme (of the Redis URL, else of the store) → factory path for the change feed
CHANGES: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_changes:SqliteChangeFeed",
    "memory": "segue.storage.memory_changes:MemoryChangeFeed",
    "redis": "segue.storage.redis_changes:RedisChangeFeed",
}
#: scheme (of the store URL) → factory path for KPI report numbers and privacy budgets
REPORTS: dict[str, str] = {
    "sqlite": "segue.storage.sqlite_reports:SqliteReportStore",
    "memory": "segue.storage.memory_reports:MemoryReportStore",
    **_postgres("segue.storage.postgres_reports:PostgresReportStore"),
}
#: scheme (of the Redis URL) → factory path for the shared second cache layer
SHARED_CACHES: dict[str, str] = {
    "redis": "segue.storage.redis_cache:RedisSharedCache",
}
