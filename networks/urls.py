from django.urls import path

from . import views

app_name = "networks"
urlpatterns = [
    # GET: the host's networks; POST: define one (admins).
    path("hosts/<slug:host_name>/networks/", views.network_list, name="list"),
    path("hosts/<slug:host_name>/networks/<str:name>/", views.network_detail, name="detail"),
    path("hosts/<slug:host_name>/networks/<str:name>/action/", views.network_action, name="action"),
]
