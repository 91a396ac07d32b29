from django.urls import path

from . import views

app_name = "consoles"
urlpatterns = [
    path("consoles/<slug:host_name>/<uuid:uuid>/", views.console_page, name="page"),
    path("consoles/<slug:host_name>/<uuid:uuid>/tickets/", views.console_tickets, name="tickets"),
    path("consoles/<slug:host_name>/<uuid:uuid>/serial/", views.console_page, {"serial": True}, name="serial"),
    path("consoles/<slug:host_name>/<uuid:uuid>/serial/tickets/", views.console_tickets, {"serial": True},
         name="serial-tickets"),
]
