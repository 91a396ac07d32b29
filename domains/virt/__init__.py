"""The only package that imports libvirt.

Everything it returns is a plain dataclass; everything it raises is a `VirtError`.
"""

from .connections import pool
from .errors import (
    AgentUnavailable,
    DomainNotFound,
    HostUnreachable,
    InvalidDefinition,
    OperationInProgress,
    OperationInvalid,
    VirtError,
)
from .inventory import (
    LIST_OPTIONS,
    DomainRecord,
    HostFacts,
    fan_out,
    get_domain,
    host_facts,
    list_domains,
)
from .states import DomainState

__all__ = [
    "LIST_OPTIONS",
    "AgentUnavailable",
    "DomainNotFound",
    "DomainRecord",
    "DomainState",
    "HostFacts",
    "HostUnreachable",
    "InvalidDefinition",
    "OperationInProgress",
    "OperationInvalid",
    "VirtError",
    "fan_out",
    "get_domain",
    "host_facts",
    "list_domains",
    "pool",
]
