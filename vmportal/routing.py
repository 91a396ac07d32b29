from django.urls import URLPattern, URLResolver

# Live-state and console websockets are added by their own apps as they arrive.
websocket_urlpatterns: list[URLPattern | URLResolver] = []
