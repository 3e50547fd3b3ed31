"""Destinations API: webhook destinations (their secret is write-only), a destination's deliveries, and resending
one delivery. Thin views: parse, call one service or selector, render."""
from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, Conflict, error_response
from profiles.common.fields import NO_NUL, NOT_BLANK
from profiles.common.pagination import NewestFirstPagination
from profiles.common.permissions import RoleModelPermissions
from segments import selectors
from segments.models import Delivery, Destination
from segments.outbound import public_destination_url
from segments.services import deliveries, destinations

# What a destination URL may be, stated in the schema as this pattern: http(s), a host name, IPv4 or [IPv6]
# address, an optional port, then printable ASCII. Django's URLValidator is stricter in ways a pattern cannot
# state (a top-level domain, for one), so the pattern is the whole rule.
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = rf"(?:{LABEL}(?:\.{LABEL})*|\[[0-9A-Fa-f:.]+\])"
WEBHOOK_URL = RegexValidator(rf"^https?://{HOST}(?::[0-9]{{1,5}})?(?:[/?#][!-~]*)?$",
                             "An http:// or https:// URL: a host, an optional port, then printable ASCII.",
                             code="invalid_url")
SECRET_HELP = ("The HMAC-SHA256 key of X-CDP-Signature, at least 16 characters, taken as given (not trimmed). "
               "Write-only: never returned.")

NOT_FOUND = error_response("No such destination.")
DELIVERY_NOT_FOUND = error_response("No such delivery.")
PENDING = error_response('The delivery is still waiting to be sent ("delivery_pending").')


class DestinationSerializer(serializers.ModelSerializer):
    # Text, not format "uri": the URL is what WEBHOOK_URL accepted, which RFC 3986 may call invalid.
    url = serializers.CharField(read_only=True)

    class Meta:
        model = Destination
        fields = ["id", "name", "url", "active", "created_at"]


class DestinationCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, validators=[NOT_BLANK])
    url = serializers.CharField(max_length=2000, validators=[WEBHOOK_URL, public_destination_url])
    secret = serializers.CharField(min_length=16, max_length=200, trim_whitespace=False, validators=[NO_NUL],
                                   help_text=SECRET_HELP)
    active = serializers.BooleanField(required=False, default=True)


class DestinationUpdateSerializer(DestinationCreateSerializer):
    """As for a create, but the secret stays unless a new one is given."""

    secret = serializers.CharField(min_length=16, max_length=200, trim_whitespace=False, validators=[NO_NUL],
                                   required=False, help_text=SECRET_HELP + " Omitted: the secret stays.")
    active = serializers.BooleanField(required=False)


class DeliverySerializer(serializers.ModelSerializer):
    segment = serializers.SlugRelatedField(slug_field="key", read_only=True)
    profile_id = serializers.IntegerField(allow_null=True, read_only=True)
    status = serializers.ChoiceField(choices=Delivery.Status.choices, read_only=True)
    type = serializers.ChoiceField(choices=[("segment.entered", "segment.entered"),
                                            ("segment.exited", "segment.exited")], read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "delivery_id", "type", "status", "attempts", "last_error", "segment", "profile_id",
                  "occurred_at", "created_at", "next_attempt_at", "delivered_at"]


class DestinationAPIView(generics.GenericAPIView):
    """Base of the destination endpoints: the role needs the permission on Destination for the method."""

    permission_classes = [RoleModelPermissions]
    queryset = Destination.objects.none()
    serializer_class = DestinationSerializer
    parser_classes = [JSONParser]

    def destination_or_404(self, destination_id: int) -> Destination:
        destination = selectors.destination_get(destination_id=destination_id)
        if destination is None:
            raise NotFound(f"No destination {destination_id}.")
        return destination


class DestinationListView(DestinationAPIView):
    @extend_schema(tags=["destinations"], operation_id="destinations_list",
                   responses={200: DestinationSerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED,
                              403: FORBIDDEN})
    def get(self, request):
        """Destinations, oldest first."""
        page = self.paginate_queryset(selectors.destinations_all())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(tags=["destinations"], operation_id="destinations_create", request=DestinationCreateSerializer,
                   responses={201: DestinationSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """A new destination; segments send to it once they name it."""
        body = DestinationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        destination = destinations.destination_create(**body.validated_data)
        return Response(DestinationSerializer(destination).data, status=status.HTTP_201_CREATED)


class DestinationDetailView(DestinationAPIView):
    @extend_schema(tags=["destinations"], operation_id="destinations_retrieve",
                   responses={200: DestinationSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, destination_id: int):
        return Response(DestinationSerializer(self.destination_or_404(destination_id)).data)

    def _update(self, request, destination_id: int, *, partial: bool) -> Response:
        self.destination_or_404(destination_id)
        body = DestinationUpdateSerializer(data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        try:
            destination = destinations.destination_update(destination_id=destination_id, **body.validated_data)
        except Destination.DoesNotExist as exc:  # deleted meanwhile
            raise NotFound(f"No destination {destination_id}.") from exc
        return Response(DestinationSerializer(destination).data)

    @extend_schema(tags=["destinations"], operation_id="destinations_update", request=DestinationUpdateSerializer,
                   responses={200: DestinationSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def put(self, request, destination_id: int):
        """Replaces name, url and active (active defaults to unchanged); the secret changes only when given."""
        return self._update(request, destination_id, partial=False)

    @extend_schema(tags=["destinations"], operation_id="destinations_partial_update",
                   request=DestinationUpdateSerializer,
                   responses={200: DestinationSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def patch(self, request, destination_id: int):
        """Changes the fields given."""
        return self._update(request, destination_id, partial=True)

    @extend_schema(tags=["destinations"], operation_id="destinations_destroy",
                   responses={204: None, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def delete(self, request, destination_id: int):
        """Deletes the destination with its deliveries; segments stop sending to it."""
        try:
            destinations.destination_delete(destination_id=destination_id)
        except Destination.DoesNotExist as exc:
            raise NotFound(f"No destination {destination_id}.") from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryPagination(NewestFirstPagination):
    # Matches the delivery_by_destination index; id breaks ties between deliveries created together.
    ordering = ("-created_at", "-id")


class DestinationDeliveriesView(generics.GenericAPIView):
    """Needs segments.view_delivery."""

    permission_classes = [RoleModelPermissions]
    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer
    pagination_class = DeliveryPagination

    @extend_schema(tags=["destinations"], operation_id="destinations_deliveries_list",
                   responses={200: DeliverySerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, destination_id: int):
        """The destination's deliveries, newest first, cursor-paginated (stable while new ones arrive)."""
        if selectors.destination_get(destination_id=destination_id) is None:
            raise NotFound(f"No destination {destination_id}.")
        page = self.paginate_queryset(selectors.destination_deliveries(destination_id=destination_id))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ResendPermission(RoleModelPermissions):
    """Resending changes the delivery: segments.change_delivery."""

    perms_map = {**RoleModelPermissions.perms_map, "POST": ["%(app_label)s.change_%(model_name)s"]}


class DeliveryResendView(generics.GenericAPIView):
    permission_classes = [ResendPermission]
    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer

    @extend_schema(tags=["destinations"], operation_id="deliveries_resend", request=None,
                   responses={202: DeliverySerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: DELIVERY_NOT_FOUND, 409: PENDING})
    def post(self, request, delivery_id: int):
        """Sends the delivery again as it was (same delivery_id, same body), in the background."""
        try:
            delivery = deliveries.delivery_resend(delivery_id=delivery_id)
        except Delivery.DoesNotExist as exc:
            raise NotFound(f"No delivery {delivery_id}.") from exc
        except deliveries.DeliveryStateError as exc:
            raise Conflict(code=exc.code, message=str(exc)) from exc
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
