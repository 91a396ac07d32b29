from django.urls import path

from . import views

app_name = "storage"
POOL = "hosts/<slug:host_name>/pools/<str:pool>/"
VOLUME = POOL + "volumes/<str:name>/"
urlpatterns = [
    path("hosts/<slug:host_name>/pools/", views.pool_list, name="pools"),
    path(POOL, views.pool_detail, name="pool"),
    path(POOL + "action/", views.pool_action, name="pool-action"),
    path(POOL + "uploads/", views.upload_start, name="uploads"),
    path(VOLUME, views.volume_detail, name="volume"),
    path(VOLUME + "delete/", views.volume_delete, name="volume-delete"),
    path(VOLUME + "download/", views.volume_download, name="volume-download"),
    path("uploads/<int:session_id>/", views.upload_status, name="upload"),
    path("uploads/<int:session_id>/chunk/", views.upload_chunk, name="upload-chunk"),
    path("uploads/<int:session_id>/cancel/", views.upload_cancel, name="upload-cancel"),
]
