from django.urls import path

from . import views

app_name = "domains"
urlpatterns = [
    path("domains/", views.domain_list, name="list"),
    path("domains/<slug:host_name>/<uuid:uuid>/", views.domain_detail, name="detail"),
    path("hosts/", views.host_list, name="hosts"),
    path("hosts/<slug:host_name>/edit/", views.host_edit, name="host-edit"),
    path("hosts/<slug:host_name>/delete/", views.host_delete, name="host-delete"),
    path("hosts/<slug:host_name>/test/", views.host_test, name="host-test"),
    path("audit/", views.audit_list, name="audit"),
]
