"""The staff console at /console/: static files, served by the API with strict headers."""
