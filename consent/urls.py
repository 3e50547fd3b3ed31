from django.urls import path, re_path

from consent import views

urlpatterns = [
    path("", views.request_queue, name="privacy-queue"),
    path("dashboard/", views.dashboard, name="privacy-dashboard"),
    path("new/", views.request_new, name="privacy-request-new"),
    path("audit/", views.audit_log, name="privacy-audit"),
    path("audit/verify/", views.audit_chain_verify, name="privacy-audit-verify"),
    path("<int:request_id>/", views.request_detail, name="privacy-request"),
    re_path(r"^(?P<request_id>[0-9]+)/receipt\.(?P<fmt>json|txt)$", views.receipt_download, name="privacy-receipt"),
    path("<int:request_id>/<slug:action>/", views.request_action, name="privacy-request-action"),
    path("exports/<str:token>/", views.export_download, name="privacy-export"),
]
