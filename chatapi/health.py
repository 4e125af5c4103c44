"""Probes for load balancers: unauthenticated, unthrottled, cheap."""

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatapi import schema


class HealthView(APIView):
    """`/healthz`: the process is up and answering. Touches nothing."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()

    @extend_schema(
        operation_id="healthz",
        summary="Liveness probe",
        description=schema.HEALTH_DESCRIPTION,
        tags=["health"],
        responses={200: schema.HEALTH_OK},
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(HealthView):
    """`/readyz`: the database answers and every migration is applied.

    Once the migrations have been seen applied, later probes only run
    `SELECT 1`: migrating is a deploy step, not something that undoes
    itself under a running process.
    """

    migrated = False

    @extend_schema(
        operation_id="readyz",
        summary="Readiness probe",
        description=schema.READY_DESCRIPTION,
        tags=["health"],
        responses={200: schema.READY_OK, 503: schema.READY_UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            if not ReadyView.migrated:
                executor = MigrationExecutor(connection)
                targets = executor.loader.graph.leaf_nodes()
                ReadyView.migrated = not executor.migration_plan(targets)
        except DatabaseError:
            return Response(
                {
                    "detail": "The database is unreachable.",
                    "code": "database_unavailable",
                },
                status=503,
            )
        if not ReadyView.migrated:
            return Response(
                {"detail": "Migrations are not applied.", "code": "migrations_pending"},
                status=503,
            )
        return Response({"status": "ready"})
