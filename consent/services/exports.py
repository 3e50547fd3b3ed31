"""Access and portability: one JSON file of everything held on the subject, downloadable once."""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent.models import PrivacyExport, PrivacyRequest, RequestStatus
from consent.registry import handlers
from consent.services.audit import audit_record
from consent.services.transitions import request_transition

FORMAT_VERSION = 1


def export_build(*, request_id: int) -> PrivacyExport | None:
    """Writes the subject's data, from every registered handler, to a file; completes the request.

    Idempotent: a request that already has its export is left as it is. Returns None for a request that is
    no longer in progress.
    """
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request_id)
        existing = request.exports.first()
        if existing is not None or request.status != RequestStatus.IN_PROGRESS:
            return existing
        profile_ids = request.progress["profile_ids"]
        now = timezone.now()
        data: dict = {"format": "cdp-subject-export", "version": FORMAT_VERSION, "request": request.pk,
                      "kind": request.kind, "generated_at": now.isoformat(), "profile_ids": profile_ids}
        for handler in handlers():
            data.update(handler.export(profile_ids))
        directory = Path(settings.PRIVACY_EXPORT_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"request-{request.pk}-{secrets.token_hex(8)}.json"
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        # Written once the transaction commits: a rollback must not leave a file of personal data behind.
        transaction.on_commit(lambda: path.write_bytes(body))
        export = PrivacyExport.objects.create(
            request=request, profile_ids=profile_ids, path=str(path), token=secrets.token_urlsafe(32),
            size=len(body), created_at=now, expires_at=now + timedelta(hours=settings.PRIVACY_EXPORT_TTL_HOURS))
        request.receipt = {"request": request.pk, "kind": request.kind, "profiles": len(profile_ids),
                           "counts": {k: len(v) for k, v in data.items() if isinstance(v, list)},
                           "bytes": len(body), "expires_at": export.expires_at.isoformat(),
                           "completed_at": now.isoformat()}
        request.completed_at = now
        request_transition(request, to=RequestStatus.COMPLETED, action="exported", details={"bytes": len(body)})
        request.save(update_fields=["status", "receipt", "completed_at"])
        return export


def _remove(export: PrivacyExport) -> None:
    if export.path and os.path.exists(export.path):
        os.remove(export.path)
    export.path, export.deleted_at = "", timezone.now()
    export.save(update_fields=["path", "deleted_at"])


@transaction.atomic
def export_download(*, token: str, actor) -> bytes | None:
    """The file's content, once: the file is deleted as it is handed over. None when the link is unknown,
    used or expired."""
    export = PrivacyExport.objects.select_for_update().filter(token=token).first()
    if export is None or export.downloaded_at or export.deleted_at or export.expires_at <= timezone.now():
        return None
    if not os.path.exists(export.path):
        return None
    body = Path(export.path).read_bytes()
    export.downloaded_at = timezone.now()
    export.save(update_fields=["downloaded_at"])
    _remove(export)
    audit_record(actor=actor, action="privacy_export.download", target_type="privacy_request",
                 target_id=export.request_id, details={"bytes": len(body)})
    return body


def exports_purge() -> int:
    """Deletes the files of expired exports; returns how many."""
    expired = PrivacyExport.objects.filter(deleted_at__isnull=True, expires_at__lte=timezone.now())
    count = 0
    for export in expired:
        _remove(export)
        count += 1
    return count


def erase_exports(profile_ids: list[int], limit: int) -> dict[str, int]:
    """Erasure handler: deletes the files and rows of earlier exports of these profiles."""
    wanted = set(profile_ids)
    # Exports are few (one per access request), so reading the open ones is cheap.
    doomed = [e for e in PrivacyExport.objects.filter(deleted_at__isnull=True) if wanted & set(e.profile_ids)][:limit]
    for export in doomed:
        _remove(export)
    gone, _ = PrivacyExport.objects.filter(pk__in=[e.pk for e in doomed]).delete()
    return {"export_files": gone}
