from django.urls import path

from . import views

app_name = "consoles"
urlpatterns = [
    path("consoles/<slug:host_name>/<uuid:uuid>/", views.console_page, name="page"),
    path("consoles/<slug:host_name>/<uuid:uuid>/tickets/", views.console_tickets, name="tickets"),
]
