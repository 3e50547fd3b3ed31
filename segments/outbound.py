"""Where webhooks may go: public addresses only, unless DESTINATIONS_ALLOW_PRIVATE_NETWORKS says otherwise.

A destination URL is typed by a marketer, and the platform posts signed personal data to it from inside the
network it runs in, so a URL naming the loopback interface, a private network or the cloud's metadata address
(169.254.169.254) would let anyone who may edit destinations reach what only the platform should. The URL is
checked on save (an address literal, or a name that is plainly local), and every connection is checked after
its name is resolved, on the address actually connected to: a name that resolves to a private address, at save
or later (DNS rebinding), is refused there.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal")


class AddressRefused(ValueError):
    """The destination's address is not a public one. Not an OSError: urllib3 would take it for a network failure
    and try again; the caller reports it as it reports a URL that cannot be parsed."""


def address_refused(address: str) -> str:
    """Why the platform must not post to this IP address (empty when it may)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
        return "a private or reserved address"
    return ""


def url_refused(url: str) -> str:
    """Why a destination URL names a host the platform must not post to, as far as the URL alone tells (an
    address literal or a local name); empty when it may, or when private networks are allowed."""
    if settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS:
        return ""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(_LOCAL_NAMES):
        return f'"{host}" is a local name'
    reason = address_refused(host)
    return f"{host} is {reason}" if reason else ""


def _checked(sock):
    if not settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS:
        address = sock.getpeername()[0]
        reason = address_refused(address)
        if reason:
            sock.close()
            raise AddressRefused(f"refused to connect to {address}: {reason} (DESTINATIONS_ALLOW_PRIVATE_NETWORKS "
                                 "is off)")
    return sock


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self):
        return _checked(super()._new_conn())


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        return _checked(super()._new_conn())


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def public_session() -> requests.Session:
    """A session whose every connection is checked as this module says. Proxies from the environment are not
    used: a proxy would connect on the platform's behalf, unchecked."""
    session = requests.Session()
    session.trust_env = False
    adapter = _PublicAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def public_destination_url(url: str) -> None:
    """A validator (a model's, a form's, a serializer's): refuses a URL that url_refused refuses."""
    reason = url_refused(url)
    if reason:
        raise ValidationError(f"Webhooks go to public addresses only: {reason}.", code="private_address")
