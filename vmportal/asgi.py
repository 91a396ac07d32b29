import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vmportal.settings")
# Django must be set up before anything imports models (Channels' sample project order).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from vmportal.frames import DirectFrames  # noqa: E402
from vmportal.lifespan import BackgroundWork  # noqa: E402
from vmportal.origins import SameOriginWebsockets  # noqa: E402
from vmportal.routing import websocket_urlpatterns  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Not Channels' AllowedHostsOriginValidator: it accepts any port and scheme of an allowed host name.
        "websocket": DirectFrames(SameOriginWebsockets(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)
# The process's background work (libvirt's event loop, the live watchers) is the application's: see lifespan.py.
application = BackgroundWork(router)
