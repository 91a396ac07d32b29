from django.urls import path

from . import views

app_name = "domains"
urlpatterns = [
    path("domains/", views.domain_list, name="list"),
    path("domains/new/", views.domain_new, name="new"),
    path("domains/new/xml/", views.domain_new_xml, name="new-xml"),
    path("domains/bulk/", views.domain_bulk, name="bulk"),
    path("domains/<slug:host_name>/<uuid:uuid>/", views.domain_detail, name="detail"),
    path("domains/<slug:host_name>/<uuid:uuid>/display/", views.domain_display, name="display"),
    path("domains/<slug:host_name>/<uuid:uuid>/hardware/", views.domain_hardware, name="hardware"),
    path("domains/<slug:host_name>/<uuid:uuid>/hardware/xml/", views.domain_definition, name="definition"),
    path("domains/<slug:host_name>/<uuid:uuid>/clone/", views.domain_clone, name="clone"),
    path("domains/<slug:host_name>/<uuid:uuid>/agent/", views.domain_agent, name="agent"),
    path("domains/<slug:host_name>/<uuid:uuid>/usage/", views.domain_usage, name="usage"),
    path("domains/<slug:host_name>/<uuid:uuid>/action/", views.domain_action, name="action"),
    path("domains/<slug:host_name>/<uuid:uuid>/delete/", views.domain_delete, name="delete"),
    path("domains/<slug:host_name>/<uuid:uuid>/snapshots/", views.snapshot_create, name="snapshot-create"),
    path("domains/<slug:host_name>/<uuid:uuid>/snapshots/<str:name>/", views.snapshot_action, name="snapshot-action"),
    path("domains/<slug:host_name>/<uuid:uuid>/migrate/", views.domain_migrate, name="migrate"),
    path("migrations/<int:job_id>/", views.migration_detail, name="migration"),
    path("migrations/<int:job_id>/action/", views.migration_action, name="migration-action"),
    path("hosts/", views.host_list, name="hosts"),
    path("hosts/<slug:host_name>/", views.host_detail, name="host"),
    path("hosts/<slug:host_name>/usage/", views.host_usage, name="host-usage"),
    path("hosts/<slug:host_name>/edit/", views.host_edit, name="host-edit"),
    path("hosts/<slug:host_name>/delete/", views.host_delete, name="host-delete"),
    path("hosts/<slug:host_name>/test/", views.host_test, name="host-test"),
]
