from django.urls import path
from django.views.decorators.cache import never_cache
from mozilla_django_oidc.views import OIDCLogoutView

from api import pages as api_pages

from . import oidc, views
from .languages import language_set

app_name = "accounts"
urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("login/code/", views.login_code, name="login-code"),
    path("login/oidc/", oidc.start, name="oidc-login"),
    path("login/oidc/callback/", oidc.callback, name="oidc-callback"),
    # POST only; signs out at the OpenID Connect provider too when the user came through it (accounts.oidc).
    path("logout/", never_cache(OIDCLogoutView.as_view()), name="logout"),
    path("language/", language_set, name="language"),
    path("two-factor/", views.two_factor, name="two-factor"),
    path("tokens/", api_pages.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke/", api_pages.token_revoke, name="token-revoke"),
]
