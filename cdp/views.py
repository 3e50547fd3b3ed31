"""The web screens: the marketer's dashboard and the profile 360 page."""
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def dashboard(request):
    return HttpResponse("dashboard")


@login_required
def profile_list(request):
    return HttpResponse("profiles")


@login_required
def profile_detail(request, profile_id):
    return HttpResponse("profile")
