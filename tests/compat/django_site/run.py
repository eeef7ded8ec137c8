"""A Django site's use of MySQL through proxyd; run by tests/compat/test_python.py.
Prints one JSON line: each check's name and what it saw."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["shop"],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.mysql",  # mysqlclient
            "HOST": os.environ["DB_HOST"],
            "PORT": os.environ["DB_PORT"],
            "USER": "app",
            "PASSWORD": "apppw",
            "NAME": "django_compat",
            "CONN_MAX_AGE": 60,
            "OPTIONS": {"charset": "utf8mb4"},
        }
    },
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Sum  # noqa: E402
from shop.models import Product  # noqa: E402

seen: dict[str, object] = {}
call_command("migrate", verbosity=0)
seen["migrated"] = "shop_product" in connection.introspection.table_names()
Product.objects.bulk_create(Product(name=f"p{i}", price=Decimal(i)) for i in range(20))
seen["created"] = Product.objects.count()
try:
    with transaction.atomic():
        Product.objects.create(name="gone", price=Decimal("1"))
        raise RuntimeError("roll back")
except RuntimeError:
    pass
seen["atomic_rolled_back"] = Product.objects.count()
with transaction.atomic():
    Product.objects.create(name="kept", price=Decimal("125"))
seen["atomic_committed"] = Product.objects.count()
ids = set()
for _ in range(5):
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        ids.add(cur.fetchone()[0])
seen["one_connection"] = len(ids) == 1
seen["aggregate"] = str(Product.objects.aggregate(total=Sum("price"))["total"])
print(json.dumps(seen))
