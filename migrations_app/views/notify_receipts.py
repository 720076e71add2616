"""GOV.UK Notify's delivery-receipt callback: POST /notify/receipts with the bearer token we gave Notify.

Anything but 2xx makes Notify try again, so a receipt for a message we do not know is still a 200; a wrong or
missing token is a 401 and changes nothing."""

import hmac
import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from migrations_app.services.notifications.receipts import notification_receipt


@csrf_exempt
@require_POST
def notify_receipts(request):
    expected = settings.NOTIFY_CALLBACK_TOKEN
    given = request.headers.get("Authorization", "")
    if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        return JsonResponse({"error": "A valid bearer token is required"}, status=401)
    try:
        payload = json.loads(request.body)
        if not isinstance(payload, dict):
            raise ValueError
    except ValueError:
        return JsonResponse({"error": "The body must be a JSON object"}, status=400)
    try:
        notification = notification_receipt(payload=payload)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"stored": notification is not None})
