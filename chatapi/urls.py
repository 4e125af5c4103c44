from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("conversations.urls")),
]

handler400 = "chatapi.views.bad_request"
handler403 = "chatapi.views.permission_denied"
handler404 = "chatapi.views.page_not_found"
handler500 = "chatapi.views.server_error"
