from django.contrib import admin
from django.urls import include, path

from drf_spectacular.views import SpectacularSwaggerView

from chatapi.admin_login import admin_login
from chatapi.health import HealthView, ReadyView
from chatapi.schema import SchemaView

urlpatterns = [
    path("healthz", HealthView.as_view(), name="healthz"),
    path("readyz", ReadyView.as_view(), name="readyz"),
    # Before the admin's own: the same form, with a limit on failures.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("api/v1/", include("conversations.urls")),
    # The OpenAPI schema (JSON with ?format=json, YAML otherwise) and its
    # docs page, whose assets are served from the sidecar package.
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

handler400 = "chatapi.views.bad_request"
handler403 = "chatapi.views.permission_denied"
handler404 = "chatapi.views.page_not_found"
handler500 = "chatapi.views.server_error"
