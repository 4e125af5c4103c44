from django.contrib import admin
from django.urls import include, path

from chatapi.health import HealthView, ReadyView

urlpatterns = [
    path("healthz", HealthView.as_view(), name="healthz"),
    path("readyz", ReadyView.as_view(), name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("conversations.urls")),
]

handler400 = "chatapi.views.bad_request"
handler403 = "chatapi.views.permission_denied"
handler404 = "chatapi.views.page_not_found"
handler500 = "chatapi.views.server_error"
