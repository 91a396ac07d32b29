from django.contrib.auth import views as auth_views
from django.urls import path

from api import pages as api_pages

from .forms import ThrottledAuthenticationForm
from .languages import language_set

app_name = "accounts"
urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html",
            authentication_form=ThrottledAuthenticationForm,
            redirect_authenticated_user=True,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("language/", language_set, name="language"),
    path("tokens/", api_pages.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke/", api_pages.token_revoke, name="token-revoke"),
]
