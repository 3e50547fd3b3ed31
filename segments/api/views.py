"""Segments API: segments, previews of unsaved definitions, members, size history, a person's segments with the
reasons. Thin views: parse, call one service or selector, render."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, Conflict, error_response
from profiles.common.pagination import NewestFirstPagination
from profiles.common.permissions import RoleModelPermissions
from profiles.common.queueing import enqueue_after_commit
from profiles.masking import mask_json, mask_text, masks_for
from profiles.selectors import profile_get
from segments import rules, selectors
from segments.api.serializers import (MemberSerializer, PreviewRequestSerializer, PreviewSerializer,
                                      ProfileSegmentSerializer, SegmentSerializer, SegmentUpdateSerializer,
                                      SizePointSerializer, StaticMembersSerializer)
from segments.models import Segment, SegmentMembership
from segments.services import definitions

INVALID_DEFINITION = error_response('The definition is not valid: {"code": "invalid_definition", "message", "field"}, '
                                    "field being the JSON path of the first bad place.")
NOT_FOUND = error_response("No such segment.")
IN_USE = error_response("Other segments' definitions name this one.")


def _invalid(exc: rules.DefinitionError) -> Response:
    return Response({"code": "invalid_definition", "message": exc.message, "field": exc.field},
                    status=status.HTTP_400_BAD_REQUEST)


class SegmentAPIView(generics.GenericAPIView):
    """Base of the segments endpoints: the role needs the permission on Segment for the method."""

    permission_classes = [RoleModelPermissions]
    queryset = Segment.objects.all()
    serializer_class = SegmentSerializer


class SegmentListView(SegmentAPIView, generics.ListAPIView):
    def get_queryset(self):
        return selectors.segment_find(query=self.request.query_params.get("q", ""),
                                      mode=self.request.query_params.get("mode", "")).prefetch_related("destinations")

    @extend_schema(tags=["segments"], operation_id="segments_list",
                   responses={200: SegmentSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request, *args, **kwargs):
        """Segments by key, with their size and when they were last computed."""
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["segments"], operation_id="segments_create", request=SegmentSerializer,
                   responses={201: SegmentSerializer, 400: INVALID_DEFINITION, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Creates a segment and queues its first computation."""
        body = SegmentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            segment = definitions.segment_create(
                key=data["key"], name=data["name"], mode=data.get("mode", Segment.Mode.BATCH),
                definition=data.get("definition"), description=data.get("description", ""),
                destinations=data.get("destinations"))
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(SegmentSerializer(segment).data, status=status.HTTP_201_CREATED)


class OneSegmentView(SegmentAPIView):
    """Base of the endpoints of one segment; each declares only its own methods."""

    def segment(self, segment_id: int) -> Segment:
        segment = Segment.objects.filter(pk=segment_id).prefetch_related("destinations").first()
        if segment is None:
            raise NotFound(f"No segment {segment_id}.")
        return segment


class SegmentDetailView(OneSegmentView):
    serializer_class = SegmentUpdateSerializer

    @extend_schema(tags=["segments"], operation_id="segments_retrieve",
                   responses={200: SegmentSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, segment_id: int):
        return Response(SegmentSerializer(self.segment(segment_id)).data)

    def _update(self, request, segment_id: int, partial: bool):
        segment = self.segment(segment_id)
        body = SegmentUpdateSerializer(segment, data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            segment = definitions.segment_update(
                segment=segment, name=data.get("name"), description=data.get("description"), mode=data.get("mode"),
                definition=data.get("definition"), destinations=data.get("destinations"))
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(SegmentSerializer(segment).data)

    @extend_schema(tags=["segments"], operation_id="segments_update", request=SegmentUpdateSerializer,
                   responses={200: SegmentSerializer, 400: INVALID_DEFINITION, 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NOT_FOUND})
    def put(self, request, segment_id: int):
        """Replaces the segment's settings (its key stays); a new definition or mode queues a recompute."""
        return self._update(request, segment_id, partial=False)

    @extend_schema(tags=["segments"], operation_id="segments_partial_update", request=SegmentUpdateSerializer,
                   responses={200: SegmentSerializer, 400: INVALID_DEFINITION, 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NOT_FOUND})
    def patch(self, request, segment_id: int):
        return self._update(request, segment_id, partial=True)

    @extend_schema(tags=["segments"], operation_id="segments_destroy",
                   responses={204: None, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND, 409: IN_USE})
    def delete(self, request, segment_id: int):
        """Deletes the segment, its memberships and history; refused while another segment names it."""
        try:
            definitions.segment_delete(segment=self.segment(segment_id))
        except definitions.SegmentInUse as exc:
            raise Conflict(code="segment_in_use", message=str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentPreviewView(SegmentAPIView):
    serializer_class = PreviewRequestSerializer

    @extend_schema(tags=["segments"], operation_id="segments_preview", request=PreviewRequestSerializer,
                   responses={200: PreviewSerializer, 400: INVALID_DEFINITION, 401: UNAUTHENTICATED,
                              403: FORBIDDEN})
    def post(self, request):
        """How many profiles a definition selects now, and a sample of them, without saving anything."""
        body = PreviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            preview = selectors.segment_preview(definition=body.validated_data["definition"])
        except rules.DefinitionError as exc:
            return _invalid(exc)
        return Response(PreviewSerializer({"count": preview.count, "sample": preview.sample,
                                           "estimated": preview.estimated, "margin": preview.margin}).data)


class MembersPagination(NewestFirstPagination):
    ordering = ("-entered_at", "-id")


class SegmentMembersView(OneSegmentView, generics.ListAPIView):
    serializer_class = MemberSerializer
    pagination_class = MembersPagination

    def get_queryset(self):
        return selectors.segment_members(segment=self.segment(self.kwargs["segment_id"]))

    @extend_schema(tags=["segments"], operation_id="segments_members",
                   responses={200: MemberSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def get(self, request, segment_id: int):
        """The current members, latest entries first (cursor pages)."""
        return generics.ListAPIView.get(self, request)


class SegmentRefreshView(OneSegmentView):
    @extend_schema(tags=["segments"], operation_id="segments_refresh", request=None,
                   responses={202: OpenApiResponse(description="A recompute is queued."), 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NOT_FOUND})
    def post(self, request, segment_id: int):
        """Queues a recompute of the segment now."""
        enqueue_after_commit("segments.recompute", self.segment(segment_id).pk)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class SegmentHistoryView(OneSegmentView):
    serializer_class = SizePointSerializer
    pagination_class = None

    @extend_schema(tags=["segments"], operation_id="segments_history",
                   responses={200: SizePointSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def get(self, request, segment_id: int):
        """The size after each recompute, oldest first (the last 1,000 points)."""
        points = list(selectors.segment_history(segment=self.segment(segment_id)).reverse()[:1000])[::-1]
        return Response(SizePointSerializer(points, many=True).data)


class SegmentStaticMembersView(OneSegmentView):
    serializer_class = StaticMembersSerializer

    @extend_schema(tags=["segments"], operation_id="segments_static_members", request=StaticMembersSerializer,
                   responses={200: OpenApiResponse(description='{"changed": n}: identifiers added or removed.'),
                              400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND,
                              409: error_response("The segment is not static.")})
    def post(self, request, segment_id: int):
        """Adds identifiers to (or removes them from) a static segment's list; queues a recompute."""
        segment = self.segment(segment_id)
        if segment.mode != Segment.Mode.STATIC:
            raise Conflict(code="not_static", message=f"Segment {segment.key} is {segment.mode}, not static.")
        body = StaticMembersSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        action = definitions.static_members_remove if body.validated_data["remove"] else definitions.static_members_add
        return Response({"changed": action(segment=segment, identifiers=body.validated_data["identifiers"])})


class ProfileSegmentsView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = SegmentMembership.objects.none()
    serializer_class = ProfileSegmentSerializer
    pagination_class = None

    @extend_schema(tags=["segments"], operation_id="profiles_segments",
                   responses={200: ProfileSegmentSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: error_response("No live profile has this id.")})
    def get(self, request, profile_id: int):
        """The person's current segments, each with the conditions that held when they entered and their own
        values (masked for roles that may not see personal data)."""
        if profile_get(profile_id=profile_id) is None:
            raise NotFound(f"No profile {profile_id}.")
        data = ProfileSegmentSerializer(selectors.profile_segments(profile_id=profile_id), many=True).data
        if masks_for(request.user):
            for membership in data:
                for reason in membership["reasons"]:
                    reason["condition"] = mask_text(reason["condition"])
                    reason["value"] = mask_json(reason["value"])
        return Response(data)
