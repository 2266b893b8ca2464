"""Cluster settings an administrator changes: the site's time zone, shelf lives, label layout.

Each section is one entry of the cluster document's `settings` map, replicated to every
node. `views.shelf_life_by_packaging` ({packaging: days}) overrides a set type's shelf life
for the expiry of labels and sets from the next label on; `label` is the label geometry
(devices.LabelLayout); `site.timezone` (IANA name) is read when a node starts.
"""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import crdt_model as cm
import devices

from ._node import Node, NodeError

_LOGGER = logging.getLogger(__name__)

SECTIONS = ("site", "views", "label")
MAX_SHELF_LIFE_DAYS = 3650


class SettingsError(NodeError):
    """Settings that cannot be kept as given; nothing is changed."""

    status = 422


def check_settings(section: str, value: Any) -> dict[str, Any]:
    """The section's value as it will be kept; SettingsError saying what is wrong."""
    if section not in SECTIONS:
        raise SettingsError(f"unknown settings section {section[:20]!r}: {', '.join(SECTIONS)}")
    if not isinstance(value, dict):
        raise SettingsError(f"settings {section}: send an object")
    if section == "site":
        return _site(value)
    if section == "views":
        return _views(value)
    try:
        devices.LabelLayout.from_settings(value)
    except (devices.LabelError, TypeError, ValueError) as err:
        raise SettingsError(f"settings label: {err}") from None
    return dict(value)


def _site(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - {"timezone"})
    if unknown:
        raise SettingsError(f"settings site: unknown key {unknown[0][:40]!r}")
    zone = value.get("timezone")
    try:
        if not isinstance(zone, str) or not zone:
            raise ValueError
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise SettingsError(
            "settings site: timezone must be a zone name like Europe/Paris"
        ) from None
    return {"timezone": zone}


def _views(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - {"shelf_life_by_packaging"})
    if unknown:
        raise SettingsError(f"settings views: unknown key {unknown[0][:40]!r}")
    rules = value.get("shelf_life_by_packaging", {})
    if not isinstance(rules, dict):
        raise SettingsError("settings views: shelf_life_by_packaging maps a packaging to days")
    for packaging, days in rules.items():
        if not isinstance(packaging, str) or not 1 <= len(packaging.strip()) <= 64:
            raise SettingsError("settings views: a packaging name has 1 to 64 characters")
        if isinstance(days, bool) or not isinstance(days, int):
            raise SettingsError(f"settings views: days for {packaging[:40]!r} must be a number")
        if not 1 <= days <= MAX_SHELF_LIFE_DAYS:
            raise SettingsError(
                f"settings views: days for {packaging[:40]!r}: 1 to {MAX_SHELF_LIFE_DAYS}"
            )
    return {"shelf_life_by_packaging": dict(rules)}


def settings_of(node: Node) -> dict[str, Any]:
    """Every section as the cluster holds it (an empty object when never set)."""
    doc = node.docs[cm.CLUSTER_DOC]
    return {section: cm.cluster_get(doc, "settings", section) or {} for section in SECTIONS}


async def async_set_settings(node: Node, section: str, value: Any, by: str) -> dict[str, Any]:
    """Replace one section of the cluster settings (on every node); what is now kept."""
    kept = check_settings(section, value)
    await node.commit_cluster(lambda doc: cm.cluster_put(doc, "settings", section, kept))
    _LOGGER.warning("settings %s changed by %s", section, by)
    return kept
