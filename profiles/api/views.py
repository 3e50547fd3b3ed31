"""Profiles API: list and search, one profile with its merge history, its timeline, lookup by identifier.

Thin views: parse the query, call one selector, render. Access comes from ProfileAPIView, so no view
can forget the role check.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import ErrorDetail, NotFound, ValidationError
from rest_framework.response import Response

from profiles import selectors
from profiles.api.serializers import (EventSerializer, LookupQuerySerializer, ProfileDetailSerializer,
                                      ProfileListQuerySerializer, ProfileListSerializer)
from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, error_response
from profiles.common.pagination import NewestFirstPagination
from profiles.common.permissions import RoleModelPermissions
from profiles.masking import masks_for
from profiles.models import Profile


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes BearerTokenAuthentication in the schema. It lives here, beside the views that use it,
    because drf-spectacular registers extensions on import and the views are always imported for the schema."""

    target_class = "profiles.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token from `manage.py create_api_token`."}


NOT_FOUND = error_response("No live profile matches.")


class ProfileAPIView(generics.GenericAPIView):
    """Base of every profiles endpoint: RoleModelPermissions reads the model of `queryset`, so the
    permission needed is profiles.view_profile whatever the view returns."""

    permission_classes = [RoleModelPermissions]
    queryset = Profile.objects.none()

    def get_serializer_context(self):
        # Masking is decided here, once for every profiles endpoint, so no view can forget it.
        return {**super().get_serializer_context(), "mask": masks_for(self.request.user)}

    def profile_or_404(self, profile_id: int) -> Profile:
        profile = selectors.profile_get(profile_id=profile_id)
        if profile is None:
            raise NotFound(f"No profile {profile_id}.")
        return profile


class ProfileListView(ProfileAPIView):
    serializer_class = ProfileListSerializer

    @extend_schema(
        tags=["profiles"], operation_id="profiles_list",
        parameters=[ProfileListQuerySerializer],
        responses={200: ProfileListSerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN},
    )
    def get(self, request):
        """Live profiles, most recently seen first. Merged profiles are not listed; their survivors are."""
        query = ProfileListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        profiles = selectors.profile_search(
            query=params.get("q", ""), partial=not masks_for(request.user),
            identifier_type=params.get("identifier_type", ""), identifier=params.get("identifier", ""),
            trait=params.get("trait", ""), trait_value=params.get("trait_value"))
        page = self.paginate_queryset(profiles)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ProfileDetailView(ProfileAPIView):
    serializer_class = ProfileDetailSerializer

    @extend_schema(
        tags=["profiles"], operation_id="profiles_retrieve",
        responses={200: ProfileDetailSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request, profile_id: int):
        """One profile. The id of a merged profile returns the profile it was merged into."""
        profile = self.profile_or_404(profile_id)
        merges = list(selectors.profile_merges(profile=profile))
        context = {**self.get_serializer_context(), "merges": merges}
        return Response(ProfileDetailSerializer(profile, context=context).data)


class TimelinePagination(NewestFirstPagination):
    # Matches the event_profile_timeline index; id breaks ties between events of the same instant.
    ordering = ("-timestamp", "-id")


class ProfileEventsView(ProfileAPIView):
    serializer_class = EventSerializer
    pagination_class = TimelinePagination

    @extend_schema(
        tags=["profiles"], operation_id="profiles_events_list",
        responses={200: EventSerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request, profile_id: int):
        """The profile's events, newest first, cursor-paginated (stable while new events arrive)."""
        profile = self.profile_or_404(profile_id)
        page = self.paginate_queryset(selectors.profile_events(profile=profile))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ProfileLookupView(ProfileAPIView):
    serializer_class = ProfileDetailSerializer
    pagination_class = None

    @extend_schema(
        tags=["profiles"], operation_id="profiles_lookup",
        parameters=[LookupQuerySerializer],
        responses={200: ProfileDetailSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                   404: NOT_FOUND},
    )
    def get(self, request):
        """The live profile holding an identifier; email and phone values are normalised first."""
        query = LookupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        kind, value = query.validated_data["type"], query.validated_data["value"]
        if not selectors.identifier_type_known(identifier_type=kind):
            # A type no rule names and no profile holds is a mistake in the request, not a missing profile.
            raise ValidationError({"type": [ErrorDetail(
                f"Unknown identifier type {kind!r}: user_id, anonymous_id, email, phone, or an external id type "
                "that an identity rule names or a profile holds.", code="unknown_identifier_type")]})
        profile = selectors.profile_lookup(identifier_type=kind, value=value)
        if profile is None:
            raise NotFound(f"No profile has the identifier {kind}:{value}.")
        merges = list(selectors.profile_merges(profile=profile))
        context = {**self.get_serializer_context(), "merges": merges}
        return Response(ProfileDetailSerializer(profile, context=context).data)
