"""The only package that imports libvirt.

Everything it returns is a plain dataclass; everything it raises is a `VirtError`. Importing it
starts nothing: every Django process `configure()`s it (DomainsConfig.ready), and the processes that
watch or migrate (daphne, watchhosts, consoleproxy) also `initialize()` libvirt's event loop.
"""

from . import hardware, migration, usage
from .actions import Action, PowerMode, available_actions, delete_domain, run_action
from .agent import GuestInfo, guest_info
from .connections import configure, pool
from .definition import (
    VIDEO_MODELS,
    BootKind,
    BootSpec,
    DefineChoices,
    DefinedDomain,
    DomainSpec,
    GraphicsSpec,
    define_choices,
    define_domain,
    define_xml,
    preview_domain_xml,
    update_display,
)
from .details import DeviceSummary, DomainDetails, SnapshotRecord, domain_details
from .errors import (
    AgentUnavailable,
    DomainNotFound,
    HostUnreachable,
    InvalidDefinition,
    NameTaken,
    OperationInProgress,
    OperationInvalid,
    OperationUnsupported,
    SnapshotNotFound,
    VirtError,
)
from .events import (
    DomainChanged,
    DomainRemoved,
    HostEvent,
    HostLost,
    HostSynced,
    HostWatcher,
    Sink,
    WatchedHost,
    initialize,
)
from .graphics import ConsoleUnavailable, GraphicsEndpoint, graphics_endpoint, vnc_auth_response
from .inventory import (
    LIST_OPTIONS,
    DomainRecord,
    HostFacts,
    fan_out,
    get_domain,
    host_facts,
    list_domains,
    record_matcher,
    record_matches,
)
from .serial import SerialConsole, SerialEndpoint, open_serial, serial_endpoint
from .snapshots import create_snapshot, delete_snapshot, revert_snapshot
from .states import DomainState
from .storage import DiskVolume, PoolCapacity, VolumeInfo, domain_disks, pool_capacities, pool_names
from .transports import SshRoute, TlsMaterial, tls_material

__all__ = [
    "hardware",
    "migration",
    "usage",
    "configure",
    "initialize",
    "DomainChanged",
    "DomainRemoved",
    "HostEvent",
    "HostLost",
    "HostSynced",
    "HostWatcher",
    "WatchedHost",
    "Sink",
    "record_matcher",
    "record_matches",
    "VIDEO_MODELS",
    "BootKind",
    "BootSpec",
    "DefineChoices",
    "DefinedDomain",
    "DiskVolume",
    "VolumeInfo",
    "domain_disks",
    "pool_names",
    "pool_capacities",
    "PoolCapacity",
    "DomainSpec",
    "GraphicsSpec",
    "define_choices",
    "define_domain",
    "define_xml",
    "preview_domain_xml",
    "update_display",
    "LIST_OPTIONS",
    "Action",
    "AgentUnavailable",
    "ConsoleUnavailable",
    "DeviceSummary",
    "DomainDetails",
    "DomainNotFound",
    "DomainRecord",
    "DomainState",
    "GraphicsEndpoint",
    "TlsMaterial",
    "tls_material",
    "GuestInfo",
    "HostFacts",
    "HostUnreachable",
    "InvalidDefinition",
    "NameTaken",
    "OperationInProgress",
    "OperationInvalid",
    "OperationUnsupported",
    "PowerMode",
    "SerialConsole",
    "SerialEndpoint",
    "SnapshotNotFound",
    "SnapshotRecord",
    "SshRoute",
    "VirtError",
    "available_actions",
    "create_snapshot",
    "delete_domain",
    "delete_snapshot",
    "domain_details",
    "fan_out",
    "get_domain",
    "graphics_endpoint",
    "guest_info",
    "host_facts",
    "list_domains",
    "pool",
    "revert_snapshot",
    "open_serial",
    "run_action",
    "serial_endpoint",
    "vnc_auth_response",
]
