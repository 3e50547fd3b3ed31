from django.urls import path

from segments import views

urlpatterns = [
    path("", views.segment_list, name="segment-list"),
    path("new/", views.segment_new, name="segment-new"),
    path("<int:segment_id>/", views.segment_detail, name="segment-detail"),
    path("<int:segment_id>/edit/", views.segment_edit, name="segment-edit"),
    path("<int:segment_id>/refresh/", views.segment_refresh, name="segment-refresh"),
]
