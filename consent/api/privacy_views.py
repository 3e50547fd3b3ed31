"""Privacy requests API: create and list, one request with its history and receipt, and its actions."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from consent.api.serializers import PrivacyRequestCreateSerializer, PrivacyRequestSerializer, ReasonSerializer
from consent.models import PrivacyRequest
from consent.services import privacy
from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, Conflict, error_response
from profiles.common.permissions import RoleModelPermissions

CONFLICT = error_response("The request's status does not allow this action.")
NOT_FOUND = error_response("No such privacy request.")


class ChangeRequestPermission(RoleModelPermissions):
    """Acting on a request (verify, execute, extend, reject) changes it: consent.change_privacyrequest."""

    perms_map = {**RoleModelPermissions.perms_map, "POST": ["%(app_label)s.change_%(model_name)s"]}


def _requests():
    return PrivacyRequest.objects.select_related("assignee").prefetch_related("transitions__actor")


class PrivacyRequestListView(generics.GenericAPIView):
    queryset = PrivacyRequest.objects.none()
    serializer_class = PrivacyRequestSerializer
    # The identifiers and changes are nested, which a form body cannot carry.
    parser_classes = [JSONParser]

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_list",
                   responses={200: PrivacyRequestSerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED,
                              403: FORBIDDEN})
    def get(self, request):
        """Every request, the earliest due first."""
        page = self.paginate_queryset(_requests().order_by("due_on", "id"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_create", request=PrivacyRequestCreateSerializer,
                   responses={201: PrivacyRequestSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """A new request; its acknowledgement and due dates follow from the regime and the kind."""
        body = PrivacyRequestCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = privacy.privacy_request_create(actor=request.user, **body.validated_data)
        return Response(PrivacyRequestSerializer(_requests().get(pk=created.pk)).data, status=status.HTTP_201_CREATED)


class PrivacyRequestDetailView(generics.GenericAPIView):
    queryset = PrivacyRequest.objects.none()
    serializer_class = PrivacyRequestSerializer

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_retrieve",
                   responses={200: PrivacyRequestSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, request_id: int):
        """One request: its status, its history, and when completed its receipt."""
        return Response(PrivacyRequestSerializer(generics.get_object_or_404(_requests(), pk=request_id)).data)


class _ActionView(generics.GenericAPIView):
    queryset = PrivacyRequest.objects.none()
    serializer_class = PrivacyRequestSerializer
    permission_classes = [ChangeRequestPermission]
    parser_classes = [JSONParser]

    def act(self, request, request_id: int, **kwargs):
        generics.get_object_or_404(PrivacyRequest.objects.all(), pk=request_id)
        try:
            self.action_service(request_id=request_id, actor=request.user, **kwargs)
        except privacy.RequestStateError as error:
            raise Conflict(code=error.code, message=str(error)) from error
        return Response(PrivacyRequestSerializer(_requests().get(pk=request_id)).data)


ACTION_RESPONSES = {200: PrivacyRequestSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                    404: NOT_FOUND, 409: CONFLICT}


class PrivacyRequestVerifyView(_ActionView):
    action_service = staticmethod(privacy.privacy_request_verify)

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_verify", request=None, responses=ACTION_RESPONSES)
    def post(self, request, request_id: int):
        """Records that the subject's identity was verified; the request is then in progress."""
        return self.act(request, request_id)


class PrivacyRequestExecuteView(_ActionView):
    action_service = staticmethod(privacy.privacy_request_execute)

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_execute", request=None, responses=ACTION_RESPONSES)
    def post(self, request, request_id: int):
        """Carries the request out: an opt-out at once, a deletion in the background (follow `status`)."""
        return self.act(request, request_id)


class _ReasonActionView(_ActionView):
    def act_with_reason(self, request, request_id: int):
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self.act(request, request_id, reason=body.validated_data["reason"])


class PrivacyRequestExtendView(_ReasonActionView):
    action_service = staticmethod(privacy.privacy_request_extend)

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_extend", request=ReasonSerializer, responses=ACTION_RESPONSES)
    def post(self, request, request_id: int):
        """Moves the due date by the one extension the regime allows; the reason is told to the subject."""
        return self.act_with_reason(request, request_id)


class PrivacyRequestRejectView(_ReasonActionView):
    action_service = staticmethod(privacy.privacy_request_reject)

    @extend_schema(tags=["privacy requests"], operation_id="privacy_requests_reject", request=ReasonSerializer, responses=ACTION_RESPONSES)
    def post(self, request, request_id: int):
        """Closes the request without carrying it out; the reason is told to the subject."""
        return self.act_with_reason(request, request_id)
