"""Probes for load balancers: unauthenticated, unthrottled, cheap."""

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.openapi import ErrorSerializer


@extend_schema_serializer(component_name="Health")
class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


@extend_schema_serializer(component_name="Ready")
class ReadySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready"])


class HealthView(APIView):
    """`/healthz`: the process is up and answering. Touches nothing."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()

    @extend_schema(
        operation_id="healthz",
        summary="Liveness probe",
        tags=["health"],
        responses={
            200: OpenApiResponse(HealthSerializer, description="The process is up.")
        },
    )
    def get(self, request: Request) -> Response:
        """Liveness: answers while the process serves requests; touches no
        database. No credentials, no rate limit."""
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
        tags=["health"],
        responses={
            200: OpenApiResponse(ReadySerializer, description="Ready to serve."),
            503: OpenApiResponse(
                ErrorSerializer,
                description=(
                    "`database_unavailable`: the database does not answer; "
                    "`migrations_pending`: migrations are not all applied."
                ),
                examples=[
                    OpenApiExample(
                        "migrations_pending",
                        value={
                            "detail": "Migrations are not applied.",
                            "code": "migrations_pending",
                        },
                    )
                ],
            ),
        },
    )
    def get(self, request: Request) -> Response:
        """Readiness: the database answers and every migration is applied.
        No credentials, no rate limit."""
        problem = self.problem()
        if problem is not None:
            return Response(problem, status=503)
        return Response({"status": "ready"})

    @staticmethod
    def problem() -> dict[str, str] | None:
        """The error body of an unready service, or None when ready."""
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            if not ReadyView.migrated:
                executor = MigrationExecutor(connection)
                targets = executor.loader.graph.leaf_nodes()
                ReadyView.migrated = not executor.migration_plan(targets)
        except DatabaseError:
            return {
                "detail": "The database is unreachable.",
                "code": "database_unavailable",
            }
        if not ReadyView.migrated:
            return {
                "detail": "Migrations are not applied.",
                "code": "migrations_pending",
            }
        return None
