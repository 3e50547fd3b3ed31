"""Campaigns API: placements, campaigns and their lifecycle, the programme's settings. Thin views: parse, call one
service or selector, render."""
from __future__ import annotations

import math

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from campaigns import selectors
from campaigns.api.serializers import (CampaignSerializer, CampaignUpdateSerializer, PlacementSerializer,
                                       ProgrammeSettingsSerializer, ResultsSerializer)
from campaigns.models import Campaign, Placement, ProgrammeSettings
from campaigns.services import definitions
from profiles.common.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED, Conflict, error_response
from profiles.common.permissions import RoleModelPermissions
from segments.rules import DefinitionError

INVALID = error_response('The definition cannot work: {"code": "invalid_definition", "message", "field"}, field '
                         "being the path of the first bad place (variants[1].weight, targeting.all[0].op).")
NOT_FOUND = error_response("No such placement or campaign.")
REFUSED = error_response("The campaign's status does not allow the action (code cannot_activate, cannot_pause, ...).")


def _invalid(exc: DefinitionError) -> Response:
    return Response({"code": "invalid_definition", "message": exc.message, "field": exc.field},
                    status=status.HTTP_400_BAD_REQUEST)


class PlacementListView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = Placement.objects.all()
    serializer_class = PlacementSerializer

    @extend_schema(tags=["campaigns"], operation_id="placements_list",
                   responses={200: PlacementSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request):
        """Placements by key."""
        page = self.paginate_queryset(selectors.placement_list())
        return self.get_paginated_response(PlacementSerializer(page, many=True).data)

    @extend_schema(tags=["campaigns"], operation_id="placements_create", request=PlacementSerializer,
                   responses={201: PlacementSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        body = PlacementSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            placement = definitions.placement_save(**body.validated_data)
        except DefinitionError as exc:
            return _invalid(exc)
        return Response(PlacementSerializer(placement).data, status=status.HTTP_201_CREATED)


class PlacementDetailView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = Placement.objects.all()
    serializer_class = PlacementSerializer

    def placement(self, placement_id: int) -> Placement:
        placement = Placement.objects.filter(pk=placement_id).first()
        if placement is None:
            raise NotFound(f"No placement {placement_id}.")
        return placement

    @extend_schema(tags=["campaigns"], operation_id="placements_retrieve",
                   responses={200: PlacementSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, placement_id: int):
        return Response(PlacementSerializer(self.placement(placement_id)).data)

    def _update(self, request, placement_id: int, partial: bool):
        placement = self.placement(placement_id)
        body = PlacementSerializer(placement, data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        try:
            placement = definitions.placement_save(placement=placement, **body.validated_data)
        except DefinitionError as exc:
            return _invalid(exc)
        return Response(PlacementSerializer(placement).data)

    @extend_schema(tags=["campaigns"], operation_id="placements_update", request=PlacementSerializer,
                   responses={200: PlacementSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def put(self, request, placement_id: int):
        return self._update(request, placement_id, partial=False)

    @extend_schema(tags=["campaigns"], operation_id="placements_partial_update", request=PlacementSerializer,
                   responses={200: PlacementSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def patch(self, request, placement_id: int):
        return self._update(request, placement_id, partial=True)

    @extend_schema(tags=["campaigns"], operation_id="placements_destroy",
                   responses={204: None, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def delete(self, request, placement_id: int):
        """Deletes the placement with its exposures; campaigns stay, without it."""
        definitions.placement_delete(placement=self.placement(placement_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CampaignListView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = Campaign.objects.all()
    serializer_class = CampaignSerializer

    @extend_schema(tags=["campaigns"], operation_id="campaigns_list",
                   responses={200: CampaignSerializer(many=True), 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request):
        """Campaigns, highest priority first (then the oldest); `?status=active` for one status."""
        page = self.paginate_queryset(selectors.campaign_list(status=request.query_params.get("status", "")))
        return self.get_paginated_response(CampaignSerializer(page, many=True).data)

    @extend_schema(tags=["campaigns"], operation_id="campaigns_create", request=CampaignSerializer,
                   responses={201: CampaignSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def post(self, request):
        """Creates a campaign as a draft; `POST /{id}/activate/` starts it."""
        body = CampaignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        try:
            campaign = definitions.campaign_save(placements=data.pop("placements"),
                                                 exclusive_with=data.pop("exclusive_with", []), **data)
        except DefinitionError as exc:
            return _invalid(exc)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)


class OneCampaignView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = Campaign.objects.all()
    serializer_class = CampaignUpdateSerializer

    def campaign(self, campaign_id: int) -> Campaign:
        campaign = Campaign.objects.filter(pk=campaign_id).prefetch_related("placements", "exclusive_with").first()
        if campaign is None:
            raise NotFound(f"No campaign {campaign_id}.")
        return campaign


class CampaignDetailView(OneCampaignView):
    @extend_schema(tags=["campaigns"], operation_id="campaigns_retrieve",
                   responses={200: CampaignSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def get(self, request, campaign_id: int):
        return Response(CampaignSerializer(self.campaign(campaign_id)).data)

    def _update(self, request, campaign_id: int, partial: bool):
        campaign = self.campaign(campaign_id)
        body = CampaignUpdateSerializer(campaign, data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        try:
            campaign = definitions.campaign_save(campaign=campaign, placements=data.pop("placements", None),
                                                 exclusive_with=data.pop("exclusive_with", None), **data)
        except DefinitionError as exc:
            return _invalid(exc)
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(tags=["campaigns"], operation_id="campaigns_update", request=CampaignUpdateSerializer,
                   responses={200: CampaignSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def put(self, request, campaign_id: int):
        """Replaces the campaign's settings (its key and status stay); a running campaign changes at once."""
        return self._update(request, campaign_id, partial=False)

    @extend_schema(tags=["campaigns"], operation_id="campaigns_partial_update", request=CampaignUpdateSerializer,
                   responses={200: CampaignSerializer, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def patch(self, request, campaign_id: int):
        return self._update(request, campaign_id, partial=True)

    @extend_schema(tags=["campaigns"], operation_id="campaigns_destroy",
                   responses={204: None, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND})
    def delete(self, request, campaign_id: int):
        """Deletes the campaign with its exposures and conversions (end it instead to keep its results)."""
        definitions.campaign_delete(campaign=self.campaign(campaign_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _transition_view(action: str, summary: str):
    class TransitionView(OneCampaignView):
        @extend_schema(tags=["campaigns"], operation_id=f"campaigns_{action}", request=None, summary=summary,
                       responses={200: CampaignSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND,
                                  409: REFUSED})
        def post(self, request, campaign_id: int):
            try:
                campaign = definitions.campaign_transition(campaign=self.campaign(campaign_id), action=action)
            except definitions.TransitionRefused as exc:
                raise Conflict(code=exc.code, message=exc.message) from exc
            return Response(CampaignSerializer(self.campaign(campaign.pk)).data)

    TransitionView.__name__ = f"Campaign{action.title()}View"
    return TransitionView


CampaignActivateView = _transition_view("activate", "Starts a draft or paused campaign (repeating it changes nothing).")
CampaignPauseView = _transition_view("pause", "Pauses an active campaign: it decides nothing until activated again.")
CampaignEndView = _transition_view("end", "Ends a campaign for good; its results stay.")


class ProgrammeSettingsView(generics.GenericAPIView):
    permission_classes = [RoleModelPermissions]
    queryset = ProgrammeSettings.objects.all()
    serializer_class = ProgrammeSettingsSerializer

    @extend_schema(tags=["campaigns"], operation_id="campaign_settings_retrieve",
                   responses={200: ProgrammeSettingsSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN})
    def get(self, request):
        """The global holdout share and the caps per channel, across all campaigns."""
        return Response(ProgrammeSettingsSerializer(selectors.programme_settings()).data)

    @extend_schema(tags=["campaigns"], operation_id="campaign_settings_update", request=ProgrammeSettingsSerializer,
                   responses={200: ProgrammeSettingsSerializer, 400: INVALID, 401: UNAUTHENTICATED,
                              403: FORBIDDEN})
    def put(self, request):
        body = ProgrammeSettingsSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            row = definitions.programme_settings_save(**body.validated_data)
        except DefinitionError as exc:
            return _invalid(exc)
        return Response(ProgrammeSettingsSerializer(row).data)

    @extend_schema(tags=["campaigns"], operation_id="campaign_settings_partial_update",
                   request=ProgrammeSettingsSerializer,
                   responses={200: ProgrammeSettingsSerializer, 400: INVALID, 401: UNAUTHENTICATED,
                              403: FORBIDDEN})
    def patch(self, request):
        return self.put(request)


class CampaignResultsView(OneCampaignView):
    @extend_schema(tags=["campaigns"], operation_id="campaigns_results",
                   parameters=[OpenApiParameter("mde", float, description="Minimum detectable effect (absolute, "
                                                "0.01 is one percentage point) for the sample-size calculator.")],
                   responses={200: ResultsSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                              404: NOT_FOUND})
    def get(self, request, campaign_id: int):
        """Per variant and control: people exposed, exposures, conversions, rate, uplift over the baseline with
        its 95% interval, p-value, probability of being best; the sample size; a verdict."""
        campaign = self.campaign(campaign_id)
        raw = request.query_params.get("mde", str(selectors.DEFAULT_MDE))
        try:
            mde = float(raw)
        except ValueError:
            mde = math.nan
        if not math.isfinite(mde) or not 0 < abs(mde) < 1:
            return Response({"code": "invalid", "message": "mde is a number between -1 and 1, not 0", "field": "mde"},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.campaign_results(campaign=campaign, mde=mde))
