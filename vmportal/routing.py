from django.urls import URLPattern, URLResolver, path

from domains.consumers import DomainListConsumer, DomainPageConsumer

# Live-state and console websockets are added by their own apps as they arrive.
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/domains/", DomainListConsumer.as_asgi()),
    path("ws/domains/<slug:host_name>/<uuid:uuid>/", DomainPageConsumer.as_asgi()),
]
