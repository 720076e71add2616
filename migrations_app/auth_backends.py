"""Signing in and who is signed in: Django's model backend, with the signed-in user (and a trust admin's
organisations) kept a moment in the shared cache.

Every signed-in request loads its user, and nearly every page then asks which organisations that user
administers: two queries before any work, on every one of the live wave page's polls (thousands of trust admins,
every 3 s). CachedModelBackend keeps both under the user's id for AUTH_USER_CACHE_SECONDS (2 s, under the
poll interval; 0 turns it off) and hands the organisations to the selectors on the user object
(selectors.scoping reads them instead of querying again in the same request). Saving or deleting the user,
or changing their organisations, forgets the kept copy at once (signals below); a change that bypasses the
models (a bulk UPDATE) shows within the period. Django still checks the session's password hash against the
kept user, so a changed password signs other sessions out as before."""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from migrations_app.models import User

# The attribute selectors.scoping reads: the organisation ids of a user loaded by this backend.
ORGANISATION_IDS = "_kept_organisation_ids"


def _key(user_id) -> str:
    return f"auth-user:{user_id}"


def organisation_ids_of(user_id) -> list[int]:
    """The organisations a user administers, from the membership table alone."""
    memberships = User.organisations.through.objects.filter(user_id=user_id)
    return list(memberships.order_by("organisation_id").values_list("organisation_id", flat=True))


class CachedModelBackend(ModelBackend):
    def get_user(self, user_id):
        seconds = settings.AUTH_USER_CACHE_SECONDS
        if seconds <= 0:
            return super().get_user(user_id)
        kept = cache.get(_key(user_id))
        if kept is None:
            user = User._default_manager.filter(pk=user_id).first()
            if user is None:
                return None
            ids = organisation_ids_of(user.pk) if user.role == User.Role.TRUST_ADMIN else []
            cache.set(_key(user_id), (user, ids), seconds)
        else:
            user, ids = kept
        setattr(user, ORGANISATION_IDS, ids)
        return user if self.user_can_authenticate(user) else None


def forget(user_ids) -> None:
    cache.delete_many([_key(pk) for pk in user_ids])


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _user_changed(sender, instance: User, **kwargs) -> None:
    forget([instance.pk])


@receiver(m2m_changed, sender=User.organisations.through)
def _organisations_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """user.organisations.add(...) (instance: the user) or organisation.admins.add(...) (instance: the
    organisation, pk_set: the users); a clear() names nobody, so every admin of the organisation is forgotten
    before it."""
    if not action.startswith("post_") and action != "pre_clear":
        return
    if isinstance(instance, User):
        instance.__dict__.pop(ORGANISATION_IDS, None)  # this request's copy too
        forget([instance.pk])
    elif action == "pre_clear":
        forget(instance.admins.values_list("pk", flat=True))
    elif pk_set:
        forget(pk_set)
