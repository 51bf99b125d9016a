"""GET /checkout/<item>: counts the item's orders (ORM, SQLite), asks the price service
($DJANGO_SHOP_PRICES) with httpx, and hands the sum to the Celery task celery_tasks.add."""

from __future__ import annotations

import os

import celery_tasks
import httpx
from django.http import JsonResponse
from django.urls import path

from django_shop.models import Order


def checkout(request, item: str):
    orders = Order.objects.filter(item=item).count()
    price = httpx.get(f"{os.environ['DJANGO_SHOP_PRICES']}/price", timeout=10).json()["price"]
    task = celery_tasks.add.delay(orders, price)
    return JsonResponse({"orders": orders, "price": price, "task": task.id})


urlpatterns = [path("checkout/<str:item>", checkout)]
