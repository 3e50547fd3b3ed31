from django.urls import path

from consent import views

urlpatterns = [
    path("", views.request_queue, name="privacy-queue"),
    path("new/", views.request_new, name="privacy-request-new"),
    path("<int:request_id>/", views.request_detail, name="privacy-request"),
    path("<int:request_id>/<slug:action>/", views.request_action, name="privacy-request-action"),
    path("exports/<str:token>/", views.export_download, name="privacy-export"),
]
