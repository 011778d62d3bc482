"""Tracking: shareable tracking links, and where a parcel is as customers may see it.

What other domains may use of it: the tables (`app.tracking.models`), the service
(`app.tracking.service`), and what is exported here."""

from app.tracking.places import load as load_places
from app.tracking.places import town_from_place, town_from_text

__all__ = ["load_places", "town_from_place", "town_from_text"]
