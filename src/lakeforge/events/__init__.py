"""Durable events: a transactional outbox, consumers with cursors, and signed webhooks.

State changes record an event in the same transaction (``Outbox.emit(..., conn=conn)``);
consumers read events in order behind durable cursors and get each one at least once
(``Outbox.consume``); webhooks are consumers that POST signed JSON
(``deliver_webhooks``, ``run_dispatcher``, ``verify_signature`` for receivers).
"""

from lakeforge.events._outbox import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    Cursor,
    Event,
    Outbox,
    backoff,
)
from lakeforge.events._webhooks import (
    Attempt,
    Delivery,
    DeliveryError,
    DeliveryReport,
    deliver_webhooks,
    deliveries,
    run_dispatcher,
    send,
    sign,
    verify_signature,
)
from lakeforge.project import (
    ALIAS_MOVED,
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    EVENT_TYPES,
    JOB_FINISHED,
    MODEL_VERSION_CREATED,
    MODEL_VERSION_DELETED,
    MONITOR_ALERT,
    VALIDATION_FAILED,
    VALIDATION_PASSED,
    EventError,
    WebhookConfig,
)

__all__ = [
    "ALIAS_MOVED",
    "APPROVAL_DECIDED",
    "APPROVAL_REQUESTED",
    "BACKOFF_BASE_S",
    "BACKOFF_MAX_S",
    "EVENT_TYPES",
    "JOB_FINISHED",
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_DELETED",
    "MONITOR_ALERT",
    "VALIDATION_FAILED",
    "VALIDATION_PASSED",
    "Attempt",
    "Cursor",
    "Delivery",
    "DeliveryError",
    "DeliveryReport",
    "Event",
    "EventError",
    "Outbox",
    "WebhookConfig",
    "backoff",
    "deliver_webhooks",
    "deliveries",
    "run_dispatcher",
    "send",
    "sign",
    "verify_signature",
]
