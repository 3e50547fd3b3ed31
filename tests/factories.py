"""factory_boy factories for rows that are not built through the collection API (users, tokens, sources).

Profiles, identifiers and events are always built by posting to /v1/* and draining the pipeline.
"""
import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from profiles.models import ApiToken, Source


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        # groups=["Marketer"] puts the user in the role groups created by migration 0002.
        if create and extracted:
            self.groups.set(Group.objects.filter(name__in=extracted))


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"source{n}")


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """Build with `key=...`: the key is hashed into key_hash, as the real service does."""

    class Meta:
        model = ApiToken
        exclude = ("key",)

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"token{n}")
    key = factory.Sequence(lambda n: f"cdp_test_key_{n}")
    prefix = factory.LazyAttribute(lambda o: o.key[:8])
    key_hash = factory.LazyAttribute(lambda o: ApiToken.hash_key(o.key))
