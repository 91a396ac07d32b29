from django.urls import path

from . import views

app_name = "people"
urlpatterns = [
    path("people/", views.user_list, name="users"),
    path("people/users/<int:user_id>/", views.user_detail, name="user"),
    path("people/groups/", views.group_list, name="groups"),
    path("people/groups/<int:group_id>/", views.group_detail, name="group"),
    path("people/grants/", views.grant_list, name="grants"),
    path("people/grants/<int:grant_id>/revoke/", views.grant_revoke, name="grant-revoke"),
    path("people/share/<slug:host_name>/<uuid:uuid>/", views.share, name="share"),
    path("people/allowances/", views.allowance_list, name="allowances"),
    path("people/allowances/<int:allowance_id>/", views.allowance_detail, name="allowance"),
    path("people/allowances/<int:allowance_id>/delete/", views.allowance_delete, name="allowance-delete"),
]
