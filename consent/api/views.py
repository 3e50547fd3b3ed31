"""Consent API: a profile's current consent, the ledger, and recording a choice. Thin views."""
from dataclasses import asdict

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from consent import selectors
from consent.api.serializers import (ConsentEntrySerializer, ConsentListQuerySerializer, ConsentRecordSerializer,
                                     ProfileConsentSerializer)
from consent.models import ConsentEntry, ConsentSource, ConsentState
from consent.services.ledger import ConsentChoice, UnknownPurpose, consent_record
from profiles import selectors as profile_selectors
from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, error_response
from profiles.common.pagination import NewestFirstPagination

NOT_FOUND = error_response("No live profile matches.")


def _profile_or_404(profile_id: int):
    profile = profile_selectors.profile_get(profile_id=profile_id)
    if profile is None:
        raise NotFound(f"No profile {profile_id}.")
    return profile


class ProfileConsentView(generics.GenericAPIView):
    """Needs consent.view_consentstate (every role)."""

    queryset = ConsentState.objects.none()
    serializer_class = ProfileConsentSerializer
    pagination_class = None

    @extend_schema(tags=["consent"], operation_id="profiles_consent_retrieve",
                   responses={200: ProfileConsentSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, profile_id: int):
        """Each purpose's current state for the profile: its latest choice, or the default of its regime."""
        profile = _profile_or_404(profile_id)
        body = {"profile_id": profile.pk, "regime": selectors.consent_regime(profile=profile),
                "purposes": [asdict(state) for state in selectors.consent_current(profile=profile)]}
        return Response(ProfileConsentSerializer(body).data)


class LedgerPagination(NewestFirstPagination):
    ordering = ("-recorded_at", "-id")


class ConsentListView(generics.GenericAPIView):
    """Reading the ledger needs consent.view_consententry, recording consent.add_consententry (privacy officer
    and admin)."""

    queryset = ConsentEntry.objects.none()
    serializer_class = ConsentEntrySerializer
    pagination_class = LedgerPagination
    # A choice names its subject with a nested identifier, which a form body cannot carry.
    parser_classes = [JSONParser]

    @extend_schema(tags=["consent"], operation_id="consents_list", parameters=[ConsentListQuerySerializer],
                   responses={200: ConsentEntrySerializer(many=True), 400: BAD_REQUEST, 401: UNAUTHENTICATED,
                              403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request):
        """Ledger entries, newest choice first, cursor-paginated."""
        query = ConsentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "profile_id" in params:
            entries = selectors.consent_history(profile=_profile_or_404(params["profile_id"]))
        else:
            entries = ConsentEntry.objects.select_related("purpose")
        if "purpose" in params:
            entries = entries.filter(purpose__key=params["purpose"])
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(tags=["consent"], operation_id="consents_create", request=ConsentRecordSerializer,
                   responses={201: ConsentEntrySerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: error_response("No live profile matches, or no such purpose.")})
    def post(self, request):
        """Records one choice (source "api") on the profile given by id or by identifier."""
        body = ConsentRecordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "identifier" in data:
            kind, value = data["identifier"]["type"], data["identifier"]["value"]
            profile = profile_selectors.profile_lookup(identifier_type=kind, value=value)
            if profile is None:
                raise NotFound(f"No profile has the identifier {kind}:{value}.")
        else:
            profile = _profile_or_404(data["profile_id"])
        choice = ConsentChoice(profile_id=profile.pk, purpose=data["purpose"], granted=data["granted"],
                               source=ConsentSource.API, recorded_at=data.get("recorded_at") or timezone.now(),
                               policy_version=data["policy_version"], ip=data["ip"], user_agent=data["user_agent"])
        try:
            [entry] = consent_record(choices=[choice], actor=request.user)
        except UnknownPurpose as exc:
            # Purposes are rows, not a fixed enum: like an unknown profile, an unknown purpose is not found.
            raise NotFound(str(exc)) from exc
        return Response(ConsentEntrySerializer(entry).data, status=status.HTTP_201_CREATED)
