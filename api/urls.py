from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import hardware, networks, storage, views

app_name = "api"
DOMAIN = "v1/domains/<slug:host_name>/<uuid:uuid>/"
POOL = "v1/hosts/<slug:host_name>/pools/<str:pool>/"
VOLUME = POOL + "volumes/<str:name>/"
NETWORK = "v1/hosts/<slug:host_name>/networks/<str:network>/"
urlpatterns = [
    path("v1/hosts/", views.HostList.as_view(), name="hosts"),
    path("v1/hosts/<slug:host_name>/", views.HostDetail.as_view(), name="host"),
    path("v1/hosts/<slug:host_name>/pools/", storage.PoolList.as_view(), name="pools"),
    path(POOL, storage.PoolDetail.as_view(), name="pool"),
    path(POOL + "actions/<slug:action>/", storage.PoolActionView.as_view(), name="pool-action"),
    path(POOL + "volumes/", storage.VolumeList.as_view(), name="volumes"),
    path(POOL + "uploads/", storage.UploadStart.as_view(), name="uploads"),
    path(VOLUME, storage.VolumeDetail.as_view(), name="volume"),
    path(VOLUME + "download/", storage.VolumeDownload.as_view(), name="volume-download"),
    path("v1/hosts/<slug:host_name>/networks/", networks.NetworkList.as_view(), name="networks"),
    path(NETWORK, networks.NetworkDetail.as_view(), name="network"),
    path(NETWORK + "actions/<slug:action>/", networks.NetworkActionView.as_view(), name="network-action"),
    path("v1/uploads/<int:session_id>/", storage.UploadDetail.as_view(), name="upload"),
    path("v1/uploads/<int:session_id>/chunk/", storage.UploadChunk.as_view(), name="upload-chunk"),
    path("v1/uploads/<int:session_id>/cancel/", storage.UploadCancel.as_view(), name="upload-cancel"),
    path("v1/domains/", views.DomainList.as_view(), name="domains"),
    path("v1/domains/xml/", views.DomainDefineXml.as_view(), name="domains-xml"),
    path(DOMAIN, views.DomainDetail.as_view(), name="domain"),
    path(DOMAIN + "agent/", views.DomainAgent.as_view(), name="domain-agent"),
    path(DOMAIN + "usage/", views.DomainUsage.as_view(), name="domain-usage"),
    path(DOMAIN + "actions/<slug:action>/", views.DomainAction.as_view(), name="domain-action"),
    path(DOMAIN + "snapshots/", views.SnapshotList.as_view(), name="snapshots"),
    path(DOMAIN + "snapshots/<str:name>/", views.SnapshotDetail.as_view(), name="snapshot"),
    path(DOMAIN + "snapshots/<str:name>/revert/", views.SnapshotRevert.as_view(), name="snapshot-revert"),
    path(DOMAIN + "display/", views.DomainDisplay.as_view(), name="display"),
    path(DOMAIN + "hardware/", hardware.DomainHardware.as_view(), name="hardware"),
    path(DOMAIN + "hardware/<slug:change>/", hardware.DomainHardwareChange.as_view(), name="hardware-change"),
    path(DOMAIN + "definition/", hardware.DomainDefinition.as_view(), name="definition"),
    path(DOMAIN + "clone/", hardware.DomainClone.as_view(), name="clone"),
    path(DOMAIN + "console-tickets/", views.ConsoleTickets.as_view(), name="console-tickets"),
    path(DOMAIN + "migrations/", views.DomainMigrations.as_view(), name="domain-migrations"),
    path("v1/migrations/<int:job_id>/", views.MigrationDetail.as_view(), name="migration"),
    path("v1/migrations/<int:job_id>/cancel/", views.MigrationCancel.as_view(), name="migration-cancel"),
    path("v1/audit/", views.AuditList.as_view(), name="audit"),
    path("v1/grants/", views.GrantList.as_view(), name="grants"),
    path("v1/grants/<int:grant_id>/", views.GrantDetail.as_view(), name="grant"),
    path("v1/allowances/", views.AllowanceList.as_view(), name="allowances"),
    path("v1/allowances/<int:allowance_id>/", views.AllowanceDetail.as_view(), name="allowance"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
